// @ts-check
// persistent: initialise amdsmi once and keep it (the field default, and the fallback of
// every SessionPolicy). Lowest latency per request; holds the device for the agent's life.
// Stateless, no parameters.

/** @type {import("../types").SessionHooks["mode"]} */
export function mode() {
  return { mode: "persistent" };
}
