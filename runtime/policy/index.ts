/**
 * `svmrt/policy`: sandboxed policy plugins declared in YAML: load, invoke hooks with
 * validated answers and fallbacks, hot-reload folders.
 *
 * ```ts
 * import { Policy } from "svmrt/policy";
 * using p = await Policy.load("policies/session/linger.yaml");
 * const d = await p.invoke("mode", SAMPLE_SESSION_INPUT, { nowMs: Date.now() });
 * ```
 */
export { Policy, type Decision, type PolicyLoadOptions } from "./policy.ts";
export { PolicyFolder, type ReloadEvent, type PolicySlot } from "./reload.ts";
export { findPolicyFiles } from "./files.ts";
export * from "./contracts/session.ts";
export * from "./contracts/sampling.ts";
