import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { PolicyError } from "../../runtime/errors.ts";
import { SANDBOX_DEFAULTS, type SandboxLimits } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

const limits = (o: Partial<SandboxLimits> = {}): SandboxLimits => ({ ...SANDBOX_DEFAULTS, timeout_ms: 200, ...o });
const load = (source: string, o: Partial<SandboxLimits> = {}) =>
  Sandbox.load({ name: "t", source, filename: "t.js", limits: limits(o), seed: 7 });

const HEALTHY = "export function hook(x) { return { doubled: x.n * 2 } }";

describe("sandbox: a healthy plugin", () => {
  test("returns data, sees its exports", async () => {
    using sb = await load(`export const params = { a: { type: "integer", default: 1 } };\n${HEALTHY}`);
    expect(sb.exports.functions).toEqual(["hook"]);
    expect(sb.exports.data).toEqual({ params: { a: { type: "integer", default: 1 } } });
    const r = await sb.call("hook", { n: 21 });
    expect(r).toEqual({ ok: true, value: { doubled: 42 }, logs: [] });
  });
  test("Math.random is seeded by the host, Date is absent", async () => {
    const src = "export function r() { return [Math.random(), Math.random(), typeof Date] }";
    using a = await load(src);
    using b = await load(src);
    const ra = await a.call<number[]>("r", null);
    const rb = await b.call<number[]>("r", null);
    expect(ra.ok && rb.ok).toBe(true);
    expect(ra).toEqual(rb);
    if (ra.ok) expect(ra.value[2] as unknown).toBe("undefined");
  });
  test("a hook that returns nothing answers null", async () => {
    using sb = await load("export function hook() { }");
    expect(await sb.call("hook", null)).toMatchObject({ ok: true, value: null });
  });
  test("async hooks that settle are answered", async () => {
    using sb = await load("export async function h(x) { await null; return x + 1 }");
    expect(await sb.call("h", 1)).toMatchObject({ ok: true, value: 2 });
  });
  test("console output is returned, capped per call", async () => {
    using sb = await load("export function h() { for (let i = 0; i < 10000; i++) console.log('line', i); return 1 }", { log_bytes: 100 });
    const r = await sb.call("h", null);
    expect(r.ok).toBe(true);
    expect(r.logs.slice(0, -1).join("").length).toBeLessThanOrEqual(100);
    expect(r.logs.at(-1)).toMatch(/log lines dropped: over 100 bytes/);
  });
});

/** Each hostile plugin, the reason it must fail with, and a follow-up healthy call. */
const HOSTILE: [string, string, string, Partial<SandboxLimits>?][] = [
  ["infinite loop", "export function hook() { for (;;) {} }", "timeout"],
  ["catastrophic regex", "export function hook() { return /^(a+)+$/.test('a'.repeat(40) + 'b') }", "timeout"],
  // The most time the host allows, so on a loaded machine only the memory limit can end it.
  ["memory bomb", "export function hook() { const a = []; for (;;) a.push(new Array(1000).fill(1)) }", "oom", { memory_bytes: 2 << 20, timeout_ms: 10_000 }],
  ["string bomb", "export function hook() { let s = 'x'; for (;;) s += s }", "exception"],
  ["deep recursion", "function f(n) { return f(n + 1) + 1 }\nexport function hook() { return f(0) }", "stack"],
  ["huge output", "export function hook() { return 'x'.repeat(1 << 20) }", "output-limit"],
  ["huge array output", "export function hook() { return new Array(300000).fill(0) }", "output-limit"],
  ["function output", "export function hook() { return { f() {} } }", "invalid-output"],
  ["symbol output", "export function hook() { return [Symbol('s')] }", "invalid-output"],
  ["cyclic output", "export function hook() { const o = {}; o.self = o; return o }", "invalid-output"],
  ["throwing getter", "export function hook() { return { get x() { throw new Error('boom') } } }", "invalid-output"],
  ["proxy output", "export function hook() { return new Proxy({}, { ownKeys() { for(;;){} } }) }", "invalid-output"],
  ["class instance", "class A { constructor() { this.x = 1 } }\nexport function hook() { return new A() }", "invalid-output"],
  ["NaN output", "export function hook() { return { loc: NaN } }", "invalid-output"],
  ["undefined inside data", "export function hook() { return { loc: undefined } }", "invalid-output"],
  ["bigint output", "export function hook() { return 1n }", "invalid-output"],
  ["throws a string", "export function hook() { throw 'nope' }", "exception"],
  ["throws null", "export function hook() { throw null }", "exception"],
  ["throws object with hostile toString", "export function hook() { throw { toString() { for(;;){} } } }", "exception"],
  ["throws error with getter message", "export function hook() { const e = new Error('x'); Object.defineProperty(e, 'message', { get() { for(;;){} } }); throw e }", "exception"],
  ["require", "export function hook() { return require('fs') }", "exception"],
  ["Bun", "export function hook() { return Bun.file('/etc/passwd') }", "exception"],
  ["process", "export function hook() { return process.env }", "exception"],
  ["fetch", "export function hook() { return fetch('http://127.0.0.1/') }", "exception"],
  ["dynamic import", "export async function hook() { return await import('fs') }", "exception"],
  ["constructor chain", "export function hook() { const g = (function(){}).constructor('return this')(); return typeof g.Bun + typeof g.process + typeof g.require }", "exception"],
  ["async constructor chain", "export function hook() { return (async function(){}).constructor('return 1') }", "exception"],
  ["eval", "export function hook() { return eval('1 + 1') }", "exception"],
  ["promise never settles", "export function hook() { return new Promise(() => {}) }", "timeout"],
  ["rejected promise", "export async function hook() { throw new TypeError('bad') }", "exception"],
  ["log flood", "export function hook() { for (;;) console.log('x'.repeat(100)) }", "timeout"],
];

describe("sandbox: hostile plugins fail with their reason; the host and a healthy policy live on", () => {
  let healthy: Sandbox;
  beforeAll(async () => {
    healthy = await load(HEALTHY);
  });
  afterAll(() => healthy.dispose());
  for (const [label, source, reason, lim] of HOSTILE) {
    test(label, async () => {
      using sb = await load(source, lim);
      const r = await sb.call("hook", null);
      if (reason === "ok") {
        expect(r).toMatchObject({ ok: true, value: "undefinedundefinedundefined" });
      } else {
        expect(r.ok).toBe(false);
        if (!r.ok) {
          expect(r.reason).toBe(reason as never);
          expect(r.message.length).toBeLessThanOrEqual(2100);
        }
      }
      // The same sandbox answers again (same failure, not a dead module) ...
      const again = await sb.call("hook", null);
      expect(again.ok ? "ok" : again.reason).toBe(reason);
      // ... and another policy is untouched.
      expect(await healthy.call("hook", { n: 2 })).toMatchObject({ ok: true, value: { doubled: 4 } });
    });
  }
});

describe("sandbox: bad modules fail to load with reason load", () => {
  const BAD: [string, string][] = [
    ["syntax error", "export function (", ],
    ["static import", "import fs from 'fs'; export function hook() {}"],
    ["top-level throw", "throw new Error('at load')"],
    ["top-level infinite loop", "for (;;) {}"],
    ["top-level await never settles", "await new Promise(() => {}); export function hook() {}"],
    ["non-data export", "export const params = { get x() { return 1 } }"],
  ];
  for (const [label, source] of BAD) {
    test(label, async () => {
      const err = await load(source, { load_timeout_ms: 100 }).then(
        () => null,
        (e) => e,
      );
      expect(err).toBeInstanceOf(PolicyError);
      expect((err as PolicyError).reason).toBe("load");
    });
  }
});

describe("sandbox: input limits", () => {
  test("oversized input is refused before the plugin runs", async () => {
    using sb = await load("export function hook(x) { return x.length }", { input_bytes: 1024 });
    const r = await sb.call("hook", "y".repeat(5000));
    expect(r).toMatchObject({ ok: false, reason: "input-limit" });
    expect(await sb.call("hook", "y".repeat(10))).toMatchObject({ ok: true, value: 10 });
  });
});

describe("sandbox: memory stays bounded", () => {
  test("allocations QuickJS does not count are stopped at the heap cap and the instance is recycled", async () => {
    const src = "export function hook() { const a = []; try { for (;;) a.push(new Array(1000).fill(1)) } catch (e) { return 'caught ' + e } }";
    using sb = await load(src, { memory_bytes: 2 << 20, timeout_ms: 5000 });
    const r = await sb.call("hook", null);
    expect(r).toMatchObject({ ok: false, reason: "oom" });
    expect(sb.stats.recycles).toBe(1);
    // Rebuilt on the next call, and still enforcing.
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "oom" });
    expect(sb.stats.builds).toBe(2);
    expect(sb.stats.recycles).toBe(2);
  });
});

describe("sandbox: deterministic budgets", () => {
  test("an infinite loop stops after the same interpreter budget every time", async () => {
    const src = "export function hook() { let i = 0; for (;;) i++ }";
    const make = () => Sandbox.load({ name: "d", source: src, filename: "d.js", limits: limits({ timeout_ms: 5 }), seed: 1, deterministic: true });
    using a = await make();
    const r = await a.call("hook", null);
    expect(r).toMatchObject({ ok: false, reason: "timeout" });
    if (!r.ok) expect(r.message).toMatch(/budget of 20 interpreter polls/);
  });
});
