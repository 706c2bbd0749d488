import { describe, expect, test } from "bun:test";
import { DECISION_STRIDE, F, FAULT_STRIDE } from "../../runtime/policy/contracts/migration.ts";
import {
  FAULT_ANSWER_EXTRA,
  faultsInputLength,
  HOOK_MIGRATION_WINDOW,
  HOOK_RESTORE_LOCATION,
  MIGRATION_ADAPTER_SOURCE,
  MIGRATION_FAULTS_ADAPTER,
  MIGRATION_PREFETCH_ADAPTER,
} from "../../runtime/policy/migration-adapter.ts";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

/**
 * The shared-memory channel (runtime/sandbox/channel.ts) must answer exactly what the
 * copying path answers, survive the guest's linear memory growing between and during
 * calls, and leave plugins no way to detach its buffers.
 */
const PLUGIN = `
let hoard = [];
export function restoreLocationBatch(b, ctx) {
  // Grow the guest heap (and so the Wasm memory) while the host holds views on it.
  if (ctx.params.grow) hoard.push(new Float64Array(1 << 18));
  for (let i = 0; i < b.n; i++) b.decisions[3 * i] = b.faults[i * b.stride + ${F.gpuId}] + ctx.nowNs;
}
export function migrationWindowBatch(b) {
  for (let i = 0; i < b.n; i++) {
    const a = b.faults[i * b.stride + ${F.addr}];
    b.decisions[3 * i + 1] = a - 1;
    b.decisions[3 * i + 2] = a + 1;
  }
}
export function prefetch(b) { return [{ start: b.faults[${F.addr}], npages: b.n, loc: 0 }]; }
export function detach(x, ctx) { return typeof new ArrayBuffer(8).transfer; }
`;

async function load(channel: boolean): Promise<Sandbox> {
  return Sandbox.load({
    name: "ch",
    source: PLUGIN,
    filename: "ch.js",
    adapters: MIGRATION_ADAPTER_SOURCE,
    limits: { ...SANDBOX_DEFAULTS, memory_bytes: 256 * 2 ** 20 },
    seed: 1,
    deterministic: true,
    channel,
  });
}

function batch(n: number, nowNs: number): Float64Array {
  const input = new Float64Array(faultsInputLength(n));
  for (let i = 0; i < n; i++) {
    input[i * FAULT_STRIDE + F.gpuId] = 100 + i;
    input[i * FAULT_STRIDE + F.addr] = 5000 + 7 * i;
  }
  input[n * FAULT_STRIDE] = nowNs;
  input[n * FAULT_STRIDE + 1] = HOOK_RESTORE_LOCATION | HOOK_MIGRATION_WINDOW;
  return input;
}

describe("sandbox: the shared-memory channel", () => {
  test("it opens on the release build and answers exactly like the copying path", async () => {
    using fast = await load(true);
    using slow = await load(false);
    expect((fast as unknown as { live: { channel?: unknown } }).live.channel).toBeDefined();
    expect((slow as unknown as { live: { channel?: unknown } }).live.channel).toBeUndefined();
    for (const n of [1, 2, 33, 256]) {
      const a = new Float64Array(n * DECISION_STRIDE + FAULT_ANSWER_EXTRA);
      const b = new Float64Array(n * DECISION_STRIDE + FAULT_ANSWER_EXTRA);
      const ctx = JSON.stringify({ gpus: [], xnack: true, params: { grow: false } });
      expect(await fast.batch(MIGRATION_FAULTS_ADAPTER, batch(n, n), n, ctx, a)).toMatchObject({ ok: true });
      expect(await slow.batch(MIGRATION_FAULTS_ADAPTER, batch(n, n), n, ctx, b)).toMatchObject({ ok: true });
      expect([...a]).toEqual([...b]);
      expect(a[0]).toBe(100 + n);
      expect(a[DECISION_STRIDE * (n - 1) + 2]).toBe(5000 + 7 * (n - 1) + 1);
    }
    // A data answer (the prefetch adapter's wire string) takes the second crossing.
    const pre = new Float64Array(2 + FAULT_STRIDE + DECISION_STRIDE);
    pre[1] = 1;
    pre[2 + F.addr] = 42;
    expect(await fast.batch(MIGRATION_PREFETCH_ADAPTER, pre, 1, "{}", null)).toMatchObject({ ok: true, value: [{ start: 42, npages: 1, loc: 0 }] });
  });

  test("answers stay right while the plugin grows the Wasm memory under the host's views", async () => {
    using sb = await load(true);
    const ctx = JSON.stringify({ gpus: [], xnack: true, params: { grow: true } });
    const before = (sb as unknown as { live: { raw: { module: { HEAPU8: Uint8Array } } } }).live.raw.module.HEAPU8.byteLength;
    for (let k = 0; k < 40; k++) {
      const out = new Float64Array(3 * DECISION_STRIDE + FAULT_ANSWER_EXTRA);
      const r = await sb.batch(MIGRATION_FAULTS_ADAPTER, batch(3, k), 3, ctx, out);
      expect(r).toMatchObject({ ok: true });
      expect([out[0], out[DECISION_STRIDE], out[2 * DECISION_STRIDE]]).toEqual([100 + k, 101 + k, 102 + k]);
    }
    const after = (sb as unknown as { live: { raw: { module: { HEAPU8: Uint8Array } } } }).live.raw.module.HEAPU8.byteLength;
    expect(after).toBeGreaterThan(before);
  });

  test("plugins cannot detach or resize an ArrayBuffer", async () => {
    using sb = await load(true);
    expect(await sb.call("detach", null)).toMatchObject({ ok: true, value: "undefined" });
  });
});
