/**
 * `svmrt agent`: the daemon, and the object an appliance embeds in its own Bun program.
 *
 * ```ts
 * import { Agent, agentConfigDefault } from "svmrt";
 * const agent = await Agent.start({ ...agentConfigDefault(), listen: { hostname: "127.0.0.1", port: 0 } });
 * console.log(agent.url, agent.gpus());
 * await agent.stop();
 * ```
 *
 * Threads (DESIGN.md): the main thread serves HTTP from the latest samples, runs the
 * policies' timers and owns configuration and reload; library calls run in the pool's
 * Workers; the emulated SVM workload runs in a child process (emu-svm-source.ts says why).
 * Start order: backend → session count → workers → inventory → metrics → sampler → SVM
 * events → advisor → HTTP. Stop order (`stop()`, SIGTERM, SIGINT): HTTP accept → sampler and
 * event readers → open sessions (bounded) → the last shutdown → workers end.
 */
import { hostname as osHostname } from "node:os";
import { type OpenMetricsContentType, openMetricsContentType, Registry } from "./prom-lib.ts";
import { emuSmiVramPublish } from "../emu/smi.ts";
import { ConfigError, InvariantError, SmiError } from "../errors.ts";
import { KfdDevice } from "../kfd/device.ts";
import { SMI_EVENTS_ALL, type SmiEvent, SmiEventReader } from "../kfd/smi-events.ts";
import { syscallsOpen } from "../ffi/libc.ts";
import { topologyRead } from "../kfd/topology.ts";
import { fixedSchedule, SAMPLING_DEFAULT_INTERVAL_MS, type Schedule } from "../policy/contracts/sampling.ts";
import { checkSessionDecision, LINGER_GRACE_MS_MAX, SESSION_FALLBACK, SESSION_MODES, type SessionDecision, type SessionMode } from "../policy/contracts/session.ts";
import type { Policy } from "../policy/policy.ts";
import { PolicyFolder, type ReloadEvent } from "../policy/reload.ts";
import { backendBanner, backendCandidates, type SmiBackendSpec } from "../smi/backend.ts";
import type { GpuInventoryEntry } from "../smi/inventory.ts";
import type { SmiLibraryInfo } from "../smi/library.ts";
import { SmiPool } from "../smi/pool.ts";
import { SMI_GROUPS } from "../smi/readings.ts";
import { sessionClosingSet, sessionModeRequest, sessionSharedCreate, sessionStatsOf } from "../smi/session.ts";
import { Advisor } from "./advisor.ts";
import type { AgentConfig } from "./config.ts";
import { EmuSvmSource } from "./emu-svm-source.ts";
import { GpuMetrics } from "./gpu-metrics.ts";
import { httpServe } from "./http.ts";
import { yieldToLoop } from "./loop.ts";
import { MultiCounter, MultiGauge, MultiHistogram, TotalCounter } from "./prom.ts";
import { type SampleEvent, Sampler } from "./sampler.ts";
import { SvmMetrics } from "./svm-metrics.ts";

export const AGENT_VERSION = "0.1.0";
/** Env override of the session mode: persistent | lazy | linger[:grace_ms]. */
export const SMI_MODE_ENV = "SVMRT_SMI_MODE";
/** Linger grace when SVMRT_SMI_MODE=linger names none, ms. */
export const SMI_MODE_ENV_GRACE_ms = 30_000;
/** Shortest bearer token accepted, characters. */
export const HTTP_TOKEN_CHARS_MIN = 16;
/** Largest token file read, bytes (a token is a line; a larger file is a wrong path). */
export const HTTP_TOKEN_FILE_BYTES_MAX = 4096;
/** Longest the agent lets scrapes in flight finish at stop, ms. */
export const HTTP_DRAIN_MAX_ms = 2_000;
/** Longest the first library init and inventory may take at start, ms. */
export const AGENT_INIT_TIMEOUT_ms = 60_000;
/** Longest the agent waits for open sessions at shutdown, ms. */
export const AGENT_STOP_SESSIONS_WAIT_ms = 5_000;
/** Inventory re-read period while some GPU has fields not yet known, ms. */
export const INVENTORY_REREAD_ms = 60_000;
/** Built-in workloads the emulated SVM source cycles through, and its pause between them. */
export const EMU_SVM_WORKLOADS = ["pingpong", "stream", "random", "producer-consumer"] as const;
export const EMU_SVM_PAUSE_ms = 2_000;
/** Period of the /metrics rendering (scrapes serve the latest one), ms. */
export const METRICS_RENDER_ms = 1_000;
/** zlib level of the cached gzip body of /metrics (fast; the text compresses ~15x anyway). */
export const METRICS_GZIP_LEVEL = 1;
/** OpenMetrics keeps being rendered this long after the last scrape that asked for it, ms. */
export const OPENMETRICS_KEEP_ms = 120_000;
/**
 * Period of a full garbage collection of the main thread, ms. JSC lets the heap of a
 * long-running process grow with the garbage of renderings and event batches before it
 * collects; a periodic full collection keeps the resident size near the live data.
 */
export const AGENT_GC_INTERVAL_ms = 30_000;
/** KFD SMI event poll period on hardware, ms. */
export const KFD_EVENTS_POLL_ms = 100;

/** One rendering of /metrics: the text, and the same gzip-compressed. */
interface RenderedMetrics {
  body: Uint8Array;
  gzip: Uint8Array;
}

/** One group's latest sample in GET /v1/gpus. */
export interface AgentSampleJson {
  values: Record<string, number>;
  ageMs: number;
  durationMs: number;
  errors: Record<string, string>;
}

/** The answer of GET /v1/gpus (and Agent.gpus()). */
export interface AgentGpusJson {
  backend: SmiLibraryInfo["backend"] | undefined;
  emulated: boolean | undefined;
  library: SmiLibraryInfo | undefined;
  gpus: (GpuInventoryEntry & { unsupported: string[]; samples: Record<string, AgentSampleJson | null> })[];
}

export interface AgentOptions {
  /** One line per event worth logging (mode changes, reloads, advice, failures). */
  log?: (line: string) => void;
  /** Answer timeout of one sample read, ms (default SAMPLE_READ_TIMEOUT_ms). */
  sampleReadTimeoutMs?: number;
}

/**
 * The mode forced by SVMRT_SMI_MODE: `persistent`, `lazy`, `linger` or `linger:GRACE_MS`,
 * nothing before, between or after.
 * @throws ConfigError naming the variable and the value
 */
export function smiModeFromEnv(v: string | undefined): SessionDecision | undefined {
  if (v === undefined || v === "") return undefined;
  const refuse = (expected: string, detail?: string) => new ConfigError({ file: `$${SMI_MODE_ENV}`, line: 1, col: 1 }, SMI_MODE_ENV, expected, detail);
  const [mode, ...rest] = v.split(":");
  if (!(SESSION_MODES as readonly string[]).includes(mode!)) throw refuse(`one of ${SESSION_MODES.join(", ")} (linger may add :grace_ms)`, `got '${v}'`);
  if (rest.length === 0) return mode === "linger" ? { mode, idleGraceMs: SMI_MODE_ENV_GRACE_ms } : { mode: mode as SessionMode };
  if (mode !== "linger") throw refuse("a grace only after linger", `got '${v}'`);
  const grace = `linger:GRACE_MS, GRACE_MS an integer from 1 to ${LINGER_GRACE_MS_MAX}`;
  const ms = rest.length === 1 && /^\d{1,10}$/.test(rest[0]!) ? Number(rest[0]) : 0;
  if (ms < 1 || ms > LINGER_GRACE_MS_MAX) throw refuse(grace, `got '${v}'`);
  const checked = checkSessionDecision({ mode, idleGraceMs: ms });
  if (!checked.ok) throw refuse(checked.message);
  return checked.value;
}

function openMetricsRegistryCreate(): Registry<OpenMetricsContentType> {
  const r = new Registry<OpenMetricsContentType>();
  r.setContentType(openMetricsContentType);
  return r;
}

export class Agent {
  readonly registry = new Registry();
  readonly openMetricsRegistry = openMetricsRegistryCreate();
  private readonly registries = [this.registry, this.openMetricsRegistry as unknown as Registry];
  private server: ReturnType<typeof httpServe> | undefined;
  private pool: SmiPool | undefined;
  private sampler: Sampler | undefined;
  private folders: PolicyFolder[] = [];
  private timers: ReturnType<typeof setInterval>[] = [];
  /** The emulated SVM source's child process (emulated backend only). */
  private emuSvm: EmuSvmSource | undefined;
  private kfdReaders: SmiEventReader[] = [];
  private kfdDevice: KfdDevice | undefined;
  private advisor: Advisor | undefined;
  private svm: SvmMetrics | undefined;
  private gpuMetrics: GpuMetrics | undefined;
  private inventory: GpuInventoryEntry[] = [];
  private stopping: Promise<void> | undefined;
  /** The policy reload running, and the one queued behind it (reloadPolicies). */
  private reloadRunning: Promise<unknown> | undefined;
  private reloadWaiting: Promise<unknown> | undefined;
  private readonly hostname = osHostname();
  readonly sessionShared: SharedArrayBuffer;
  spec!: SmiBackendSpec;
  libraryInfo!: SmiLibraryInfo;
  /** Why the session mode is what it is. */
  modeReason = "";
  private lastSessionEval = { atMs: Date.now(), opens: 0, attempts: 0, busy: 0 };
  private readonly log: (line: string) => void;
  private readonly opts: AgentOptions;
  /** The latest rendering of /metrics, by format (true: OpenMetrics). */
  private metricsCache = new Map<boolean, RenderedMetrics>();
  private metricsRendering = new Map<boolean, Promise<RenderedMetrics>>();
  private openMetricsAskedMs = 0;
  /** Samples received; /healthz turns ready once a rendering holds one. */
  private samplesSeen = 0;
  private renderedWithSamples = false;
  private readonly m;

  private constructor(
    readonly config: AgentConfig,
    opts: AgentOptions,
    initial: SessionDecision,
  ) {
    this.log = opts.log ?? (() => {});
    this.opts = opts;
    this.sessionShared = sessionSharedCreate(initial.mode, initial.idleGraceMs ?? 0);
    const r = this.registries;
    this.m = {
      info: new MultiGauge(r, { name: "svmrt_info", help: "svmrt version and the GPU library it reads (emulated=\"true\" when no real GPU is read)", labelNames: ["version", "backend", "emulated", "library_version"] }),
      sampleDuration: new MultiHistogram(r, { name: "svmrt_sample_duration_seconds", help: "Time to read one metric group of one GPU, seconds", labelNames: ["group"], buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 1, 5] }),
      sampleAge: new MultiGauge(r, {
        name: "svmrt_sample_age_seconds",
        help: "Age of the latest sample of a GPU's metric group, seconds",
        labelNames: ["gpu_id", "group"],
        collect: () => this.sampleAgesSet(),
      }),
      sampleErrors: new MultiCounter(r, { name: "svmrt_sample_errors_total", help: "Failed reads by GPU, group and status", labelNames: ["gpu_id", "group", "status"] }),
      openSessions: new MultiGauge(r, { name: "svmrt_smi_open_sessions", help: "Open library sessions", collect: () => this.sessionStatsSet() }),
      mode: new MultiGauge(r, { name: "svmrt_smi_mode", help: "1 for the session mode in force", labelNames: ["mode"] }),
      decisions: new MultiCounter(r, { name: "svmrt_policy_decisions_total", help: "Policy decisions by policy, kind and who decided (plugin, builtin, fallback)", labelNames: ["policy", "kind", "by"] }),
      fallbacks: new MultiCounter(r, { name: "svmrt_policy_fallbacks_total", help: "Decisions the fallback made because the plugin failed, by reason", labelNames: ["policy", "reason"] }),
      http: new MultiCounter(r, { name: "svmrt_http_requests_total", help: "HTTP requests by path and status code", labelNames: ["path", "code"] }),
      hungWorkers: new MultiGauge(r, { name: "svmrt_library_hung_workers", help: "Library workers blocked in a call past its timeout" }),
    };
    new TotalCounter(r, { name: "svmrt_smi_inits_total", help: "Library inits (amdsmi_init) since start" }, () => sessionStatsOf(this.sessionShared).inits);
    new TotalCounter(r, { name: "svmrt_smi_shutdowns_total", help: "Library shutdowns since start" }, () => sessionStatsOf(this.sessionShared).shutdowns);
    new TotalCounter(r, { name: "svmrt_plugin_crashes_total", help: "Plugin sandboxes rebuilt after a crash, all policies" }, () => this.pluginCrashes());
  }

  /**
   * Start the agent. @throws ConfigError (config, profile, SVMRT_SMI_MODE), SmiError (an
   * explicitly chosen library missing or failing its first init), Error (port in use).
   */
  static async start(config: AgentConfig, opts: AgentOptions = {}): Promise<Agent> {
    const forced = smiModeFromEnv(process.env[SMI_MODE_ENV]);
    // Every policy file is loaded and tested; only the ones the config names keep a sandbox.
    const used = new Set([config.sampling.policy, config.session.policy, config.advisor.policy].filter((n) => n !== undefined));
    const folders = config.policyDirs.map((d) => new PolicyFolder(d, { pluginRoots: config.pluginRoots, onEvent: (e) => opts.log?.(reloadLine(e)), serve: (spec) => used.has(spec.name) }));
    const findPolicy = (name: string | undefined) => (name === undefined ? undefined : folders.map((f) => f.get(name)).find((p) => p !== undefined));
    let initial: SessionDecision = SESSION_FALLBACK;
    let reason = "the default";
    try {
      for (const f of folders) await f.start(true);
      if (forced) {
        initial = forced;
        reason = `forced by ${SMI_MODE_ENV}`;
      } else {
        const p = findPolicy(config.session.policy);
        if (p) {
          const d = await p.invoke<SessionDecision>("mode", { nowMs: Date.now(), requestsPerS: 0, initLatencyMs: 0, shutdownLatencyMs: 0, contention: 0, openSessions: 0, currentMode: "persistent", idleMs: 0 }, { nowMs: Date.now() });
          initial = d.value;
          reason = `SessionPolicy ${p.name} (${d.by})`;
        } else if (config.session.policy !== undefined) reason = `SessionPolicy ${config.session.policy} not loaded: the default`;
      }
    } catch (e) {
      // A fail-closed SessionPolicy, a folder that cannot be watched: nothing may stay behind.
      for (const f of folders) f.close();
      throw e;
    }
    const agent = new Agent(config, opts, initial);
    agent.folders = folders;
    agent.modeReason = reason;
    try {
      await agent.boot(findPolicy, forced !== undefined);
    } catch (e) {
      await agent.stop();
      throw e;
    }
    return agent;
  }

  private async boot(findPolicy: (n: string | undefined) => Policy | undefined, modeForced: boolean): Promise<void> {
    const c = this.config;
    // The main thread never loads a device library: each candidate is tried by the pool's
    // Workers, the first that loads is kept (auto: amdsmi, rocm-smi, emulated).
    const candidates = backendCandidates({ choice: c.backend, profile: c.profile, amdsmiLib: c.amdsmiLib, rocmSmiLib: c.rocmSmiLib });
    for (const [i, spec] of candidates.entries()) {
      try {
        this.pool = await SmiPool.start({ spec, sessionShared: this.sessionShared, size: c.workers, log: (l) => this.log(l) });
        this.spec = spec;
        break;
      } catch (e) {
        if (i === candidates.length - 1) throw e;
        this.log(`${spec.backend} not used: ${(e as Error).message}`);
      }
    }
    if (this.pool === undefined) throw new InvariantError("no backend candidate");
    this.libraryInfo = this.pool.info!;
    this.log(backendBanner(this.libraryInfo));
    // The first init and the first inventory may take long on a real host (a 16-GPU init).
    await this.pool.call({ op: "start", reason: this.modeReason }, AGENT_INIT_TIMEOUT_ms);
    this.inventory = await this.pool.call<GpuInventoryEntry[]>({ op: "inventory" }, AGENT_INIT_TIMEOUT_ms);
    // A 24.x amdsmi tells its version only after an init: ask again now.
    this.libraryInfo = await this.pool.call<SmiLibraryInfo>({ op: "info" });
    this.log(`${this.inventory.length} GPU(s): ${this.inventory.map((g) => `${g.index}=${g.uuid}`).join(", ")}`);
    this.m.info.set({ version: AGENT_VERSION, backend: this.libraryInfo.backend, emulated: String(this.libraryInfo.emulated), library_version: this.libraryInfo.version ?? "unknown" }, 1);

    this.gpuMetrics = new GpuMetrics({ registries: this.registries, prefix: c.metrics.prefix, fields: c.metrics.fields, hostname: this.hostname, labels: c.metrics.labels });
    this.gpuMetrics.inventorySet(this.inventory);

    this.sampler = new Sampler({ pool: this.pool, gpus: this.inventory, onSample: (e) => this.sampled(e), readTimeoutMs: this.opts.sampleReadTimeoutMs });
    this.sampler.start();
    this.every(c.sampling.evaluateMs, () => this.samplingEvaluate(findPolicy(c.sampling.policy)));
    if (c.sampling.policy !== undefined && findPolicy(c.sampling.policy) === undefined) {
      this.log(`sampling: policy '${c.sampling.policy}' not loaded; every group is read every ${SAMPLING_DEFAULT_INTERVAL_MS} ms until a policy of that name loads`);
    }
    if (!modeForced) this.every(c.session.evaluateMs, () => this.sessionEvaluate(findPolicy(c.session.policy)));
    this.every(INVENTORY_REREAD_ms, () => this.inventoryReread());

    if (c.svm.enabled) await this.svmStart();
    const advisorPolicy = findPolicy(c.advisor.policy);
    if (advisorPolicy !== undefined && c.svm.enabled) {
      // The policy is looked up at every tick: a hot reload replaces (and disposes) the old one.
      this.advisor = new Advisor({
        policy: () => findPolicy(c.advisor.policy),
        gpus: this.advisorGpus(),
        pid: c.advisor.pid,
        log: (l: string) => this.log(`advice: ${l}`),
      });
      this.every(c.advisor.intervalMs, async () => {
        await this.advisor?.tick(Number(process.hrtime.bigint()));
      });
    } else if (c.advisor.policy !== undefined) this.log(`advisor: policy '${c.advisor.policy}' not loaded; /v1/advice stays empty`);

    await this.metricsRefresh();
    this.every(METRICS_RENDER_ms, () => this.metricsRefresh());
    this.every(AGENT_GC_INTERVAL_ms, () => Bun.gc(true));

    const token = c.http.tokenFile === undefined ? undefined : await tokenRead(c.http.tokenFile);
    this.server = httpServe({
      listen: c.listen,
      connectionsMax: c.http.connectionsMax,
      requestBytesMax: c.http.requestBytesMax,
      token,
      handlers: {
        metrics: (om) => this.metricsText(om),
        // Ready once a rendering holds a sample (or at once on a host with no GPU to sample).
        ready: () => this.renderedWithSamples || (this.inventory.length === 0 && this.metricsCache.has(false)),
        gpus: () => this.gpus(),
        policies: () => this.policies(),
        advice: () => this.advice(),
        reload: () => this.reloadPolicies(),
        served: (path, code) => this.m.http.inc({ path, code: String(code) }),
      },
    });
    this.log(`serving on ${this.url}`);
  }

  /** Sampler counters: reads answered, reads failed, GPUs with a hung read. */
  samplerStats(): { reads: number; failures: number; hungGpus: string[] } {
    return { reads: this.sampler?.reads ?? 0, failures: this.sampler?.failures ?? 0, hungGpus: this.sampler?.hungGpus() ?? [] };
  }

  /** Library workers blocked in a read past its timeout. */
  get hungWorkers(): number {
    return this.pool?.hungWorkers ?? 0;
  }

  /** Where the agent listens. */
  get url(): string {
    const s = this.server;
    if (s === undefined) return "";
    if ("unix" in this.config.listen) return `unix:${this.config.listen.unix}`;
    const host = s.hostname?.includes(":") ? `[${s.hostname}]` : s.hostname;
    return `http://${host}:${s.port}`;
  }

  /** Run `fn` every `ms`; a run still in flight makes the next ones skip (no pile-up). */
  private every(ms: number, fn: () => unknown): void {
    let running = false;
    const t = setInterval(() => {
      if (running) return;
      running = true;
      Promise.resolve()
        .then(fn)
        .catch((e) => this.log(`timer: ${(e as Error).message}`))
        .finally(() => {
          running = false;
        });
    }, ms);
    this.timers.push(t);
  }

  private sampled(e: SampleEvent): void {
    const gpu_id = String(e.gpu.index);
    if (e.failure) {
      const status = e.failure instanceof SmiError ? e.failure.statusName : "ERROR";
      this.m.sampleErrors.inc({ gpu_id, group: e.group, status });
      return;
    }
    const s = e.sample!;
    if (this.samplesSeen++ === 0) void this.metricsRefresh();
    this.m.sampleDuration.observe({ group: e.group }, s.durationMs / 1000);
    for (const msg of Object.values(s.errors)) this.m.sampleErrors.inc({ gpu_id, group: e.group, status: msg.split(":")[0]! });
    this.gpuMetrics?.readingSet(e.gpu.index, e.group, s.values, Object.keys(s.values).length > 0 || Object.keys(s.errors).length === 0);
  }

  private sampleAgesSet(): void {
    const now = Date.now();
    for (const g of this.inventory) {
      for (const group of SMI_GROUPS) {
        const s = this.sampler?.latest(g.uuid, group);
        if (s) this.m.sampleAge.set({ gpu_id: String(g.index), group }, (now - s.readAtMs) / 1000);
      }
    }
  }

  private sessionStatsSet(): void {
    const s = sessionStatsOf(this.sessionShared);
    this.m.openSessions.set({}, s.openSessions);
    for (const mode of SESSION_MODES) this.m.mode.set({ mode }, mode === s.mode ? 1 : 0);
    this.m.hungWorkers.set({}, this.pool?.hungWorkers ?? 0);
  }

  /** Sandbox crashes of every loaded policy. */
  private pluginCrashes(): number {
    let n = 0;
    for (const f of this.folders) for (const s of f.status()) n += s.policy?.sandbox.stats.crashes ?? 0;
    return n;
  }

  /**
   * /metrics from the latest rendering: a scrape never renders on its own path once the
   * first rendering exists. The render timer (METRICS_RENDER_ms) re-renders the text format
   * always, and OpenMetrics while someone asked for it within OPENMETRICS_KEEP_ms.
   */
  private async metricsText(openMetrics: boolean): Promise<RenderedMetrics & { contentType: string }> {
    const reg: Registry<OpenMetricsContentType> | Registry = openMetrics ? this.openMetricsRegistry : this.registry;
    if (openMetrics) this.openMetricsAskedMs = Date.now();
    const r = this.metricsCache.get(openMetrics) ?? (await this.metricsRender(openMetrics));
    return { ...r, contentType: reg.contentType };
  }

  /** Render one format now; concurrent callers share one rendering. */
  private metricsRender(openMetrics: boolean): Promise<RenderedMetrics> {
    let p = this.metricsRendering.get(openMetrics);
    if (p === undefined) {
      const reg: Registry<OpenMetricsContentType> | Registry = openMetrics ? this.openMetricsRegistry : this.registry;
      const samples = this.samplesSeen;
      p = registryRender(reg, openMetrics)
        .then((text) => {
          // Encoded and compressed once per rendering, not once per scrape (Prometheus asks
          // for gzip: a 16-GPU exposition shrinks from ~240 KB to ~15 KB on the wire).
          const body = new TextEncoder().encode(text);
          const r: RenderedMetrics = { body, gzip: Bun.gzipSync(body, { level: METRICS_GZIP_LEVEL }) };
          this.metricsCache.set(openMetrics, r);
          if (!openMetrics && samples > 0) this.renderedWithSamples = true;
          return r;
        })
        .finally(() => this.metricsRendering.delete(openMetrics));
      this.metricsRendering.set(openMetrics, p);
    }
    return p;
  }

  private async metricsRefresh(): Promise<void> {
    await this.metricsRender(false);
    if (Date.now() - this.openMetricsAskedMs < OPENMETRICS_KEEP_ms) await this.metricsRender(true);
    else this.metricsCache.delete(true);
  }

  private decisionCount(p: Policy, by: string, failure?: { reason: string }): void {
    this.m.decisions.inc({ policy: p.name, kind: p.spec.kind, by });
    if (failure) this.m.fallbacks.inc({ policy: p.name, reason: failure.reason });
  }

  private async samplingEvaluate(p: Policy | undefined): Promise<void> {
    const s = this.sampler;
    if (!s) return;
    const input = s.scheduleInput(Date.now());
    let schedule: Schedule;
    if (p === undefined) schedule = fixedSchedule(input);
    else {
      const d = await p.invoke<Schedule>("schedule", input, { nowMs: input.nowMs });
      this.decisionCount(p, d.by, d.failure);
      if (d.failure) this.log(`SamplingPolicy ${p.name}: ${d.failure.reason}: ${d.failure.message}; the fixed schedule decides`);
      schedule = d.value;
    }
    s.scheduleApply(schedule);
  }

  private async sessionEvaluate(p: Policy | undefined): Promise<void> {
    if (p === undefined) return;
    const st = sessionStatsOf(this.sessionShared);
    const now = Date.now();
    const last = this.lastSessionEval;
    const dt = Math.max(1, now - last.atMs) / 1000;
    const attempts = st.initAttempts - last.attempts;
    const input = {
      nowMs: now,
      requestsPerS: (st.opens - last.opens) / dt,
      initLatencyMs: st.initLatencyMs,
      shutdownLatencyMs: st.shutdownLatencyMs,
      contention: attempts > 0 ? (st.initBusy - last.busy) / attempts : 0,
      openSessions: st.openSessions,
      currentMode: st.mode,
      idleMs: st.lastCloseMs === 0 ? 0 : Math.max(0, now - st.lastCloseMs),
    };
    this.lastSessionEval = { atMs: now, opens: st.opens, attempts: st.initAttempts, busy: st.initBusy };
    const d = await p.invoke<SessionDecision>("mode", input, { nowMs: now });
    this.decisionCount(p, d.by, d.failure);
    const v = d.value;
    if (v.mode !== st.mode || (v.mode === "linger" && v.idleGraceMs !== undefined)) {
      if (v.mode !== st.mode) this.log(`session: SessionPolicy ${p.name} asks for ${v.mode}${v.idleGraceMs ? ` (grace ${v.idleGraceMs} ms)` : ""} (requests ${input.requestsPerS.toFixed(2)}/s, init ${input.initLatencyMs.toFixed(1)} ms, contention ${input.contention.toFixed(2)})`);
      sessionModeRequest(this.sessionShared, v.mode, v.idleGraceMs ?? 0);
      await this.pool?.call({ op: "maintain" });
    }
  }

  private async inventoryReread(): Promise<void> {
    if (!this.pool || !this.inventory.some((g) => g.unknown.length > 0)) return;
    // It touches every GPU: not while one of them hangs (it would hang one more worker).
    if ((this.sampler?.hungGpus().length ?? 0) > 0) return;
    const next = await this.pool.call<GpuInventoryEntry[]>({ op: "inventory" }, AGENT_INIT_TIMEOUT_ms);
    this.inventory = next;
    this.gpuMetrics?.inventorySet(next);
    this.sampler?.gpusSet(next);
  }

  /** DME gpu_id of a KFD gpu_id, from the inventory. */
  private gpuIdOfKfd(kfd: number): string | undefined {
    const g = this.inventory.find((x) => x.kfdGpuId === kfd);
    return g === undefined ? undefined : String(g.index);
  }

  private advisorGpus() {
    return this.inventory.filter((g) => g.kfdGpuId !== undefined).map((g) => ({ id: g.kfdGpuId!, hiveId: Number.parseInt(g.hiveId ?? "0", 16) || 0 }));
  }

  private svmFeed(events: SmiEvent[], dropped: number, gpuIdForDrops?: number): void {
    this.svm?.observe(events);
    if (dropped > 0 && gpuIdForDrops !== undefined) this.svm?.dropped(gpuIdForDrops, dropped);
    this.advisor?.feed(events);
  }

  private async svmStart(): Promise<void> {
    this.svm = new SvmMetrics({
      registries: this.registries,
      gpuIdOf: (k: number) => this.gpuIdOfKfd(k),
      perProcess: this.config.svm.perProcess,
      constLabels: { hostname: this.hostname, ...this.config.metrics.labels },
    });
    for (const g of this.inventory) if (g.kfdGpuId !== undefined) this.svm.gpuAdd(g.kfdGpuId);
    if (this.spec.backend === "emulated") {
      const { profile, shared } = this.spec;
      const firstGpu = profile.gpus[0]?.id;
      const vramClear = (): void => {
        for (const [i] of profile.gpus.entries()) emuSmiVramPublish(shared, i, 0);
      };
      try {
        this.emuSvm = EmuSvmSource.start({
          profile,
          workloads: EMU_SVM_WORKLOADS,
          pauseMs: EMU_SVM_PAUSE_ms,
          onEvents: (gpuId, events, malformed) => {
            this.svmFeed(events, 0);
            this.svm?.malformedSync(gpuId, malformed);
          },
          onDropped: (count) => this.svmFeed([], count, firstGpu),
          onVram: (gpuIndex, bytes) => emuSmiVramPublish(shared, gpuIndex, bytes),
        });
      } catch (e) {
        this.log(`SVM events unavailable: the emulated SVM source cannot start: ${(e as Error).message}; svm_* families stay empty`);
        return;
      }
      this.emuSvm.done.then(vramClear, (e) => {
        vramClear();
        // While the agent stops, the child may die of the same signal first (a service
        // manager signals every process of the unit): nothing to report then.
        if (this.stopping === undefined) this.log(`${(e as Error).message}; svm_* families stop moving`);
      });
      this.log(`SVM events: EMULATED workloads (${EMU_SVM_WORKLOADS.join(", ")}) on the emulated KFD`);
      return;
    }
    // Hardware: every GPU's SMI event fd, all processes (needs CAP_SYS_ADMIN; else own process only).
    try {
      this.kfdDevice = KfdDevice.open(syscallsOpen());
      const topo = topologyRead();
      for (const w of topo.warnings) this.log(`topology: ${w.message}`);
      for (const node of topo.nodes) {
        if (node.gpuId === 0) continue;
        const r = SmiEventReader.open(this.kfdDevice, node.gpuId, [...SMI_EVENTS_ALL, "ALL_PROCESS"]);
        this.kfdReaders.push(r);
        r.watch(
          (evs) => {
            this.svmFeed(evs, 0);
            this.svm?.malformedSync(node.gpuId, r.parser.malformedCount);
          },
          (e) => this.log(`SVM events of gpu 0x${node.gpuId.toString(16)} stopped: ${(e as Error).message}`),
          KFD_EVENTS_POLL_ms,
        );
      }
      this.log(`SVM events: /dev/kfd, ${this.kfdReaders.length} GPU(s)`);
    } catch (e) {
      // All or nothing: readers opened before the failure are closed with the device.
      for (const r of this.kfdReaders) r.close();
      this.kfdReaders = [];
      this.kfdDevice?.close();
      this.kfdDevice = undefined;
      this.log(`SVM events unavailable: ${(e as Error).message}; svm_* families stay empty`);
    }
  }

  /** GPUs with their latest samples and ages (GET /v1/gpus). */
  gpus(): AgentGpusJson {
    const now = Date.now();
    return {
      backend: this.libraryInfo?.backend,
      emulated: this.libraryInfo?.emulated,
      library: this.libraryInfo,
      gpus: this.inventory.map((g) => ({
        ...g,
        unsupported: this.sampler?.unsupportedOf(g.uuid) ?? [],
        samples: Object.fromEntries(
          SMI_GROUPS.map((group) => {
            const s = this.sampler?.latest(g.uuid, group);
            return [group, s === undefined ? null : { values: s.values, ageMs: now - s.readAtMs, durationMs: s.durationMs, errors: s.errors }];
          }),
        ),
      })),
    };
  }

  /** Loaded policies (GET /v1/policies). */
  policies(): unknown {
    return this.folders.flatMap((f) =>
      f.status().map((s) => ({
        file: s.file,
        name: s.policy?.name ?? s.validated?.name,
        kind: s.policy?.spec.kind ?? s.validated?.kind,
        revision: s.policy?.spec.revision ?? s.validated?.revision,
        serving: s.policy !== undefined,
        lastError: s.error ?? null,
        role: s.policy === undefined ? null : this.roleOf(s.policy.name),
      })),
    );
  }

  private roleOf(name: string): string | null {
    const c = this.config;
    if (name === c.sampling.policy) return "sampling";
    if (name === c.session.policy) return "session";
    if (name === c.advisor.policy) return "advisor";
    return null;
  }

  /** Current hints (GET /v1/advice). */
  advice(): unknown {
    return { emulated: this.libraryInfo?.emulated ?? true, hints: this.advisor?.hints() ?? [], stats: this.advisor?.stats ?? null };
  }

  /**
   * Reload every policy folder now (SIGHUP, POST /v1/reload). Bounded under a flood: one
   * reload runs and at most one waits behind it; a call while one waits shares that one (it
   * starts after the call, so it sees every change made before it).
   */
  reloadPolicies(): Promise<unknown> {
    if (this.reloadWaiting !== undefined) return this.reloadWaiting;
    const start = (): Promise<unknown> => {
      const p: Promise<unknown> = Promise.all(this.folders.map((f) => f.reload()))
        .then(() => this.policies())
        .finally(() => {
          if (this.reloadRunning === p) this.reloadRunning = undefined;
        });
      this.reloadRunning = p;
      return p;
    };
    if (this.reloadRunning === undefined) return start();
    this.reloadWaiting = this.reloadRunning
      .catch(() => {})
      .then(() => {
        this.reloadWaiting = undefined;
        return start();
      });
    return this.reloadWaiting;
  }

  /** Stop in order; idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      // Stop accepting; scrapes in flight get HTTP_DRAIN_MAX_ms to finish, then are cut.
      let drained = false;
      await Promise.race([server.stop(false).then(() => (drained = true)), Bun.sleep(HTTP_DRAIN_MAX_ms)]);
      if (!drained) await server.stop(true);
    }
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.sampler?.stop();
    for (const r of this.kfdReaders) r.close();
    this.kfdReaders = [];
    this.kfdDevice?.close();
    if (this.emuSvm) {
      await this.emuSvm.stop();
      this.emuSvm = undefined;
    }
    this.advisor?.[Symbol.dispose]?.();
    sessionClosingSet(this.sessionShared);
    if (this.pool) {
      const r = await this.pool.close(AGENT_STOP_SESSIONS_WAIT_ms);
      if (r && !r.shutDown) this.log(`stop: ${r.openSessions} session(s) still open (a hung read); the library is left to the process exit`);
      this.pool = undefined;
    }
    for (const f of this.folders) f.close();
    this.folders = [];
    this.log("stopped");
  }
}

/**
 * The bearer token of `file`: at most HTTP_TOKEN_FILE_BYTES_MAX bytes, surrounding white
 * space ignored, at least HTTP_TOKEN_CHARS_MIN visible ASCII characters and nothing else (a
 * line break or a control character inside could never be sent in a header).
 * @throws ConfigError naming the file and http.token_file
 */
async function tokenRead(file: string): Promise<string> {
  const where = { file, line: 1, col: 1 };
  const f = Bun.file(file);
  let token: string;
  try {
    if (f.size > HTTP_TOKEN_FILE_BYTES_MAX) throw new ConfigError(where, "http.token_file", `a file of at most ${HTTP_TOKEN_FILE_BYTES_MAX} bytes`, `it has ${f.size}`);
    token = (await f.text()).trim();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(where, "http.token_file", "a readable file holding the bearer token", (e as NodeJS.ErrnoException).code ?? (e as Error).message);
  }
  if (token.length < HTTP_TOKEN_CHARS_MIN) throw new ConfigError(where, "http.token_file", `a token of at least ${HTTP_TOKEN_CHARS_MIN} characters`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new ConfigError(where, "http.token_file", "a token of visible ASCII characters, without spaces or line breaks inside");
  return token;
}

/**
 * `registry.metrics()` family by family, yielding to the event loop between families, so a
 * 16-GPU rendering (~15 ms of string building) never holds up a scrape or a timer for more
 * than one family's share. Same text as `metrics()` (prom-client 15.1.3, pinned): families
 * joined by a blank line, or in OpenMetrics by one newline, counters named without `_total`
 * (as `metrics()` renames them) and `# EOF` at the end. `getMetricsAsString(metric)` is the
 * per-family step `metrics()` itself uses.
 */
async function registryRender(reg: Registry<OpenMetricsContentType> | Registry, openMetrics: boolean): Promise<string> {
  const render = reg as unknown as { getMetricsAsString(metric: unknown): Promise<string> };
  const parts: string[] = [];
  for (const m of reg.getMetricsAsArray()) {
    const metric = m as unknown as { name: string; type: string };
    if (openMetrics && metric.type === "counter" && metric.name.endsWith("_total")) metric.name = metric.name.slice(0, -"_total".length);
    parts.push(await render.getMetricsAsString(metric));
    await yieldToLoop();
  }
  return openMetrics ? `${parts.join("\n")}\n# EOF\n` : `${parts.join("\n\n")}\n`;
}

function reloadLine(e: ReloadEvent): string {
  if (e.type === "loaded") return `policy ${e.name} loaded from ${e.file} (revision ${e.revision}${e.replaced ? `, replaced ${e.replaced}` : ""})`;
  if (e.type === "removed") return `policy ${e.name} removed (${e.file})`;
  return `policy file ${e.file} rejected: ${e.error}${e.serving ? ` (revision ${e.serving} keeps serving)` : ""}`;
}
