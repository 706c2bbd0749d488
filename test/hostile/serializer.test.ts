/**
 * The strict serializer against a plugin that pollutes the prototypes it reads through.
 */
import { describe, expect, test } from "bun:test";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

const load = (source: string) => Sandbox.load({ name: "ser", source, filename: "ser.js", limits: { ...SANDBOX_DEFAULTS, timeout_ms: 200 }, seed: 1 });

describe("hostile: serializer", () => {
  // Guards against: prelude `"value" in d` follows the descriptor's prototype chain, so with
  // Object.prototype.value set an accessor property passes as data (its value: 1).
  test("Object.prototype.value does not let a getter through as data", async () => {
    using sb = await load("Object.prototype.value = 1;\nexport function hook() { return { get x() { return 2 } } }");
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "invalid-output" });
  });

  // Guarantees that hold (kept: not covered elsewhere).
  test("a promise from an earlier, timed-out call cannot answer a later call", async () => {
    using sb = await load("let late; export function slow() { return new Promise((r) => { late = r }) }\nexport function fast() { late('FROM SLOW'); return Promise.resolve('fast') }");
    expect(await sb.call("slow", null)).toMatchObject({ ok: false, reason: "timeout" });
    expect(await sb.call("fast", null)).toMatchObject({ ok: true, value: "fast" });
  });

  test("a Promise species swapped by the plugin cannot hang or forge the async answer", async () => {
    using sb = await load(
      "class P2 extends Promise { static get [Symbol.species]() { return function (ex) { ex(() => {}, () => {}) } } }\nPromise.prototype.constructor = P2;\nexport async function hook() { return 5 }",
    );
    expect(await sb.call("hook", null)).toMatchObject({ ok: true, value: 5 });
  });

  test("patched JSON, Reflect, Object and String methods do not change what the host receives", async () => {
    using sb = await load(
      [
        "JSON.stringify = () => 'R{\"forged\":1}'; JSON.parse = () => ({ forged: 1 });",
        "Reflect.ownKeys = () => []; Object.getOwnPropertyDescriptor = () => ({ value: 'forged', enumerable: true });",
        "String.prototype.slice = function () { return 'Equarantined\\nforged' };",
        "export function hook(x) { return { got: x } }",
      ].join("\n"),
    );
    expect(await sb.call("hook", { a: [1, "b"] })).toMatchObject({ ok: true, value: { got: { a: [1, "b"] } } });
  });
});
