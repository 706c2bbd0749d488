/**
 * An appliance that runs the svmrt agent inside its own Bun program: its own configuration
 * (emulated GPUs, a port the kernel picks, its own labels), the GPUs and their latest readings
 * through the agent's API, one read of its own through an amdsmi session, one scrape.
 *
 *   bun add svmrt         # or "svmrt": "file:svmrt-0.1.0.tgz" in package.json
 *   bun embed-agent.ts    # exit 0 after an orderly stop
 *
 * On a GPU host, drop `backend: "emulated"` (the default `auto` picks amdsmi, then rocm-smi).
 */
import { Agent, type AgentConfig, agentConfigDefault } from "svmrt";
import { type GpuInventoryEntry, type SmiGroup, SmiSessionManager, smiLibraryOpen, type Values } from "svmrt/smi";

/** Longest wait for the first sample of every GPU, ms. */
const FIRST_SAMPLE_WAIT_ms = 20_000;
const POLL_ms = 50;

/** What `agent.gpus()` answers (the body of GET /v1/gpus). */
interface GpusAnswer {
  backend: string;
  emulated: boolean;
  gpus: (GpuInventoryEntry & { samples: Record<SmiGroup, { values: Values; ageMs: number } | null> })[];
}

const config: AgentConfig = {
  ...agentConfigDefault(),
  backend: "emulated",
  listen: { hostname: "127.0.0.1", port: 0 },
  metrics: { prefix: "", fields: [], labels: { appliance: "edge-7" } },
};

const agent = await Agent.start(config, { log: (line) => console.error(`svmrt: ${line}`) });
try {
  console.log(`agent serving on ${agent.url}`);
  // Ready when every GPU has its first temperature and power samples.
  const sampled = (a: GpusAnswer) => a.gpus.length > 0 && a.gpus.every((g) => g.samples.temperature !== null && g.samples.power !== null);
  const deadline = performance.now() + FIRST_SAMPLE_WAIT_ms;
  let answer = agent.gpus() as GpusAnswer;
  while (!sampled(answer)) {
    if (performance.now() > deadline) throw new Error(`no sample within ${FIRST_SAMPLE_WAIT_ms} ms: see the agent's log lines above`);
    await Bun.sleep(POLL_ms);
    answer = agent.gpus() as GpusAnswer;
  }
  console.log(`${answer.gpus.length} GPU(s), backend ${answer.backend}${answer.emulated ? " (emulated)" : ""}`);
  for (const g of answer.gpus) {
    const t = g.samples.temperature?.values.junction_c;
    const p = g.samples.power?.values.socket_w;
    console.log(`gpu ${g.index} ${g.uuid} ${g.marketName ?? "?"}: junction ${t ?? "?"} C, socket ${p ?? "?"} W`);
  }

  // A read of our own, on the agent's library and session count: the library is initialised
  // once per process whoever reads. amdsmi calls block; an appliance that reads often makes
  // them in a Worker, as the agent does.
  {
    using library = smiLibraryOpen(agent.spec);
    using smi = new SmiSessionManager({ library, shared: agent.sessionShared });
    using session = smi.open();
    for (const gpu of session.gpus()) console.log(`session read ${gpu.uuid}: ${session.memory(gpu, "vram").usedBytes} VRAM bytes used`);
  }

  const text = await (await fetch(`${agent.url}/metrics`)).text();
  const series = (prefix: string) => text.split("\n").filter((l) => l.startsWith(prefix)).length;
  console.log(`metrics: ${series("gpu_")} gpu_* series, ${series("svm_")} svm_* series`);
} finally {
  await agent.stop();
}
