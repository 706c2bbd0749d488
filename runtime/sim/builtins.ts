/**
 * Built-in workloads (`svmrt sim --list-workloads`), each written in the workload YAML
 * format of docs/workloads.md and parsed by the same code as a user's file. Some depend on
 * the profile (GPU count, VRAM size through `%vram` sizes).
 */
import type { MachineProfile } from "./profile.ts";
import { parseWorkload, type Workload } from "./workload.ts";

interface Builtin {
  summary: string;
  yaml(profile: MachineProfile): string;
}

const header = (name: string, description: string): string => `kind: Workload\nname: ${name}\ndescription: ${description}\n`;

function stencil(p: MachineProfile): string {
  const n = p.gpus.length;
  let y = header("stencil", `1-D stencil over ${n} GPUs, 512 MiB slab each, halo exchange with neighbours, 4 iterations`);
  y += "allocations:\n  - { name: grid, size: " + n * 512 + "MiB }\nstreams:\n";
  for (let g = 0; g < n; g++) {
    y += `  - agent: gpu${g}\n    ops:\n      - repeat:\n          times: 4\n          ops:\n`;
    y += `            - access: { alloc: grid, offset: ${g * 512}MiB, size: 512MiB, write: 0.5 }\n`;
    if (g > 0) y += `            - access: { alloc: grid, offset: ${g * 512 - 2}MiB, size: 2MiB }\n`;
    if (g < n - 1) y += `            - access: { alloc: grid, offset: ${(g + 1) * 512}MiB, size: 2MiB }\n`;
    y += "            - barrier: true\n";
  }
  return y;
}

export const BUILTINS: Record<string, Builtin> = {
  stream: {
    summary: "gpu0 reads a 1 GiB managed buffer once, sequentially",
    yaml: () =>
      header("stream", "gpu0 reads a 1 GiB managed buffer once, sequentially") +
      "allocations:\n  - { name: buf, size: 1GiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: buf }\n",
  },
  random: {
    summary: "gpu0 makes 262144 uniformly random page accesses over 1 GiB (30% writes)",
    yaml: () =>
      header("random", "gpu0 makes 262144 uniformly random page accesses over 1 GiB") +
      "allocations:\n  - { name: buf, size: 1GiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: buf, pattern: random, count: 262144, write: 0.3 }\n",
  },
  zipf: {
    summary: "gpu0 makes 262144 Zipf(1.1) accesses over 4 GiB: a hot set at the start",
    yaml: () =>
      header("zipf", "gpu0 makes 262144 Zipf(1.1) accesses over 4 GiB") +
      "allocations:\n  - { name: buf, size: 4GiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: buf, pattern: zipf, zipf_s: 1.1, count: 262144 }\n",
  },
  strided: {
    summary: "gpu0 touches every page of 1 GiB with a stride of 2 MiB + 4 KiB",
    yaml: () =>
      header("strided", "gpu0 touches every page of 1 GiB with a stride of 513 pages") +
      "allocations:\n  - { name: buf, size: 1GiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: buf, pattern: strided, stride: 513, count: 262144 }\n",
  },
  stencil: { summary: "1-D stencil across every GPU, halo exchange with neighbours, 4 iterations", yaml: stencil },
  "producer-consumer": {
    summary: "the CPU writes 256 MiB, gpu0 reads it, 4 rounds",
    yaml: () =>
      header("producer-consumer", "the CPU writes 256 MiB, gpu0 reads it, 4 rounds") +
      "allocations:\n  - { name: buf, size: 256MiB }\nstreams:\n" +
      "  - agent: cpu\n    ops:\n      - repeat: { times: 4, ops: [ { access: { alloc: buf, write: 1 } }, { barrier: true }, { barrier: true } ] }\n" +
      "  - agent: gpu0\n    ops:\n      - repeat: { times: 4, ops: [ { barrier: true }, { access: { alloc: buf } }, { barrier: true } ] }\n",
  },
  pingpong: {
    summary: "gpu0 and gpu1 take turns writing the same 64 MiB, 8 rounds",
    yaml: () =>
      header("pingpong", "gpu0 and gpu1 take turns writing the same 64 MiB, 8 rounds") +
      "allocations:\n  - { name: buf, size: 64MiB }\nstreams:\n" +
      "  - agent: gpu0\n    ops:\n      - repeat: { times: 8, ops: [ { access: { alloc: buf, write: 1 } }, { barrier: true }, { barrier: true } ] }\n" +
      "  - agent: gpu1\n    ops:\n      - repeat: { times: 8, ops: [ { barrier: true }, { access: { alloc: buf, write: 1 } }, { barrier: true } ] }\n",
  },
  "stream-64k": {
    summary: "gpu0 reads a 256 MiB managed buffer once, sequentially, at 64 KiB migration granularity (density-prefetch's showcase)",
    yaml: () =>
      header("stream-64k", "gpu0 reads a 256 MiB managed buffer once, sequentially, with GRANULARITY 4 (the kernel migrates 64 KiB per fault)") +
      "allocations:\n  - { name: buf, size: 256MiB, attrs: [ { type: GRANULARITY, value: 4 } ] }\n" +
      "streams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: buf }\n",
  },
  "hotset-remote": {
    summary: "gpu0 reads a 16 MiB hot set 256 times, with ACCESS_IN_PLACE on it, data in system memory (access-counter's showcase)",
    yaml: () =>
      header("hotset-remote", "gpu0 reads a 16 MiB hot set 256 times; it has ACCESS_IN_PLACE on it and the data starts in system memory") +
      "allocations:\n  - { name: hot, size: 16MiB, attrs: [ { type: ACCESS_IN_PLACE, value: gpu0 } ] }\n" +
      "streams:\n  - agent: gpu0\n    ops:\n      - repeat: { times: 256, ops: [ { access: { alloc: hot } } ] }\n",
  },
  "oversub-125": {
    summary: "gpu0 streams twice over 125% of its VRAM",
    yaml: () =>
      header("oversub-125", "gpu0 streams twice over 125% of its VRAM") +
      "allocations:\n  - { name: buf, size: 125%vram }\nstreams:\n  - agent: gpu0\n    ops:\n      - repeat: { times: 2, ops: [ { access: { alloc: buf } } ] }\n",
  },
  "oversub-150": {
    summary: "gpu0 streams twice over 150% of its VRAM",
    yaml: () =>
      header("oversub-150", "gpu0 streams twice over 150% of its VRAM") +
      "allocations:\n  - { name: buf, size: 150%vram }\nstreams:\n  - agent: gpu0\n    ops:\n      - repeat: { times: 2, ops: [ { access: { alloc: buf } } ] }\n",
  },
};

/** The built-in workload `name` for `profile`, or undefined. */
export function builtinWorkload(name: string, profile: MachineProfile): Workload | undefined {
  // Own keys only: `toString`, `constructor` and the like are not workloads.
  const b = Object.hasOwn(BUILTINS, name) ? BUILTINS[name] : undefined;
  return b === undefined ? undefined : parseWorkload(`builtin:${name}`, b.yaml(profile), profile);
}
