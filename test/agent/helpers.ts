/**
 * Helpers of the agent tests: start an agent in this process on a free loopback port, wait
 * for conditions with a named bound, scrape.
 */
import { readdirSync, readFileSync } from "node:fs";
import { Agent, type AgentOptions } from "../../runtime/agent/agent.ts";
import { type AgentConfig, agentConfigDefault } from "../../runtime/agent/config.ts";
import { EMU_SVM_CHILD_COMMAND } from "../../runtime/agent/emu-svm-source.ts";

/** Longest a test waits for a condition (first sample, a series to appear), ms. */
export const WAIT_MAX_ms = 20_000;
/** Poll period while waiting, ms. */
export const WAIT_POLL_ms = 25;

/** An agent config on the emulated backend, loopback port chosen by the kernel. */
export function testConfig(over: Partial<AgentConfig> = {}): AgentConfig {
  return { ...agentConfigDefault(), backend: "emulated", listen: { hostname: "127.0.0.1", port: 0 }, workers: 2, ...over };
}

export async function agentStart(over: Partial<AgentConfig> = {}, opts: AgentOptions = {}): Promise<{ agent: Agent; lines: string[] }> {
  const lines: string[] = [];
  const agent = await Agent.start(testConfig(over), { log: (l) => lines.push(l), ...opts });
  return { agent, lines };
}

/**
 * Poll `probe` until it returns a value other than undefined.
 * @throws Error naming `what` after `maxMs`.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, maxMs = WAIT_MAX_ms): Promise<T> {
  const deadline = performance.now() + maxMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${maxMs} ms waiting for ${what}`);
    await Bun.sleep(WAIT_POLL_ms);
  }
}

export async function scrape(agent: Agent, accept?: string): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`${agent.url}/metrics`, { headers: accept ? { accept } : {} });
  return { status: r.status, type: r.headers.get("content-type") ?? "", text: await r.text() };
}

/** Value of the first series of `name` whose labels include every `labels` pair; undefined when absent. */
export function seriesValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

/** Sum of every series of `name` whose labels include every `labels` pair; undefined when none. */
export function seriesSum(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Wait until /healthz says ready. */
export function waitReady(agent: Agent): Promise<true> {
  return waitFor("the first sample (/healthz 200)", async () => ((await fetch(`${agent.url}/healthz`)).status === 200 ? true : undefined));
}

/** The environment variables of a running process (/proc/PID/environ). */
export function environOf(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const eq = kv.indexOf("=");
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** The pid of `parent`'s live child running the emulated SVM source, or undefined. */
export function emuSvmChildOf(parent: number): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) === parent && rest[0] !== "Z" && readFileSync(`/proc/${name}/cmdline`, "utf8").includes(EMU_SVM_CHILD_COMMAND)) return Number(name);
    } catch {
      // The process ended while being read.
    }
  }
  return undefined;
}
