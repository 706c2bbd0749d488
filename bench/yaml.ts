/**
 * bench/yaml.ts: parse time of the strict YAML reader (runtime/config.ts parseYaml) on a flow
 * map of many distinct keys, the shape that made its duplicate-key check quadratic. Thread CPU
 * time next to wall time, medians of ROUNDS; prints one JSON object on one line.
 *
 *   bun bench/yaml.ts
 */
import { parseYaml } from "../runtime/config.ts";
import { median, threadCpuNs } from "./cpu-time.ts";

/** Rounds per size (the median is reported). */
const ROUNDS = 5;
/** Key counts of one flow map (one line: the line cap does not apply); 22,000 nearly fill the 256 KiB cap. */
const SIZES = [10_000, 22_000];

const out: Record<string, { cpu_ms: number; wall_ms: number; bytes: number }> = {};
for (const n of SIZES) {
  const text = `{${Array.from({ length: n }, (_, i) => `k${i}: 0`).join(", ")}}`;
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = threadCpuNs();
    const w0 = performance.now();
    try {
      parseYaml("bench.yaml", text);
    } catch {
      // a refusal is timed the same
    }
    wall.push(performance.now() - w0);
    cpu.push((threadCpuNs() - c0) / 1e6);
  }
  out[`keys_${n}`] = { cpu_ms: Number(median(cpu).toFixed(1)), wall_ms: Number(median(wall).toFixed(1)), bytes: text.length };
}
console.log(JSON.stringify({ bench: "yaml", rounds: ROUNDS, ...out }));
