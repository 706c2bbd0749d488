/**
 * The deadline interrupt is catchable across an await. QuickJS raises an uncatchable
 * "interrupted" error, but inside a promise job the failed `await` becomes an ordinary
 * rejection the plugin can catch; the host's drain loop (sandbox.ts drainPending) keeps
 * running jobs (up to 64 x PENDING_JOBS_MAX = 640,000 of them, each until the next poll)
 * and accepts whatever answer settles. Measured: 640,001 catches, 35 s of host thread, on a
 * timeout_ms of 50.
 */
import { describe, expect, test } from "bun:test";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

const catcher = (times: number) =>
  `async function spin() { for (;;) {} }\nexport async function hook() { let caught = 0; for (let k = 0; k < ${times}; k++) { try { await spin() } catch (e) { caught++ } } return "survived " + caught }`;
const load = (source: string) => Sandbox.load({ name: "intr", source, filename: "intr.js", limits: { ...SANDBOX_DEFAULTS, timeout_ms: 50 }, seed: 1 });

describe("hostile: the deadline is final", () => {
  test("a hook that catches the interrupt cannot answer after its deadline", async () => {
    using sb = await load(catcher(3));
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "timeout" });
  });

  // No clock in the assertion (a busy machine stretches any): the hook asks for 640,000
  // catches, which held the host for ~35 s before the fix; the test's own timeout, far below
  // that and far above a deadline-bound answer on a loaded machine, is the check.
  test("catching the interrupt 640,000 times does not hold the host past the deadline", async () => {
    using sb = await load(catcher(640_000));
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "timeout" });
  }, 20_000);

  test("a sync hook whose async helper swallows the interrupt does not answer late", async () => {
    // The interrupt raised inside an async function's synchronous part becomes a rejected
    // promise: the hook itself goes on and returns after its deadline.
    using sb = await load("async function spin() { for (;;) {} }\nexport function hook() { spin(); return 'late' }");
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "timeout" });
  });

  test("the same trick in a sync hook's leftover jobs cannot extend the next call", async () => {
    // A sync hook answers at once but leaves an interrupt-catching loop queued; the next
    // async call's drain then runs it under the new call's deadline.
    using sb = await load(
      "async function spin() { for (;;) {} }\nasync function loop() { for (let k = 0; k < 40000; k++) { try { await spin() } catch (e) {} } }\nexport function arm() { loop(); return 1 }\nexport async function next() { return 2 }",
    );
    // arm spun until its interrupt: it is late, whatever it caught.
    expect(await sb.call("arm", null)).toMatchObject({ ok: false, reason: "timeout" });
    // Its queued loop died with the instance: the next call answers (a loop run under its
    // deadline would make it late: reason "timeout").
    expect(await sb.call("next", null)).toMatchObject({ ok: true, value: 2 });
    expect(sb.stats.recycles).toBe(1);
  });
});
