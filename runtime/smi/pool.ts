/**
 * The agent's library Workers, seen from the main thread (which never calls a device
 * library). A call goes to an idle worker; a call that gets no answer by its deadline (counted
 * from `call()`, time in the queue included) is reported as a TIMEOUT. A call that timed out in
 * a worker sets that worker aside as hung (a thread blocked in a native call cannot be
 * interrupted): a fresh worker takes its place while fewer than POOL_HUNG_WORKERS_MAX are hung,
 * so one hung read never blocks the other GPUs. A hung worker that answers at last rejoins the
 * pool. A worker that fails to start, dies of an uncaught error or ends is removed and
 * replaced, never more than `size + POOL_HUNG_WORKERS_MAX` alive; a replacement that fails to
 * start is retried after a back-off (POOL_WORKER_RESTART_DELAY_MIN_ms doubling to
 * POOL_WORKER_RESTART_DELAY_MAX_ms), never in a tight loop.
 */
import {
  ConfigError,
  ConfigErrors,
  InvariantError,
  KfdError,
  POLICY_FAILURE_REASONS,
  PolicyError,
  type PolicyFailureReason,
  SmiError,
  UsageError,
} from "../errors.ts";
import { workerUrl } from "../assets.ts";
import type { SmiBackendSpec } from "./backend.ts";
import type { SmiLibraryInfo } from "./library.ts";

/** Calls waiting for a worker beyond this are refused (the sampler skips that tick). */
export const POOL_QUEUE_MAX = 1024;
/** Workers set aside as hung at most; at the bound calls queue for the healthy ones. */
export const POOL_HUNG_WORKERS_MAX = 8;
/** Default answer timeout of a call, ms. */
export const POOL_CALL_TIMEOUT_ms = 5_000;
/** Longest a worker may take to load its library binding, ms. */
export const POOL_WORKER_START_TIMEOUT_ms = 30_000;
/** Wait before the next start after a worker failed to start, ms; doubles per failure in a row. */
export const POOL_WORKER_RESTART_DELAY_MIN_ms = 250;
/** Longest wait between two starts that keep failing, ms. */
export const POOL_WORKER_RESTART_DELAY_MAX_ms = 30_000;
/** close(waitMs) waits at most waitMs plus this for the library's teardown to answer, ms. */
export const POOL_TEARDOWN_MARGIN_ms = 1_000;

export type PoolRequest =
  | { id: number; op: "start"; reason: string }
  | { id: number; op: "inventory" }
  | { id: number; op: "read"; uuid: string; group: string; skip: string[] }
  | { id: number; op: "maintain" }
  | { id: number; op: "info" }
  | { id: number; op: "teardown"; waitMs: number };
export type PoolOp = PoolRequest["op"];
type RequestBody = PoolRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

export interface WorkerInit {
  id: number;
  op: "init";
  spec: SmiBackendSpec;
  sessionShared: SharedArrayBuffer;
}

/** An error as plain data: its class name, message, and the fields its class needs. */
export interface WireError {
  name: string;
  message: string;
  /** SmiError */
  fn?: string;
  statusName?: string;
  status?: number;
  /** ConfigError */
  file?: string;
  line?: number;
  col?: number;
  field?: string;
  expected?: string;
  /** ConfigErrors */
  errors?: WireError[];
  /** KfdError */
  op?: string;
  errnoName?: string;
  errno?: number;
  hint?: string;
  /** PolicyError */
  policy?: string;
  hook?: string;
  reason?: string;
}

export type PoolReply = { id: number; ok: true; value?: unknown; log?: string } | { id: number; ok: false; error: WireError };

/** An error as plain data for postMessage; errorFromWire rebuilds its class. */
export function errorToWire(e: unknown): WireError {
  if (e instanceof SmiError) return { name: "SmiError", message: e.message, fn: e.fn, statusName: e.statusName, status: e.status };
  if (e instanceof ConfigError) return { name: "ConfigError", message: e.message, file: e.file, line: e.line, col: e.col, field: e.field, expected: e.expected };
  if (e instanceof ConfigErrors) return { name: "ConfigErrors", message: e.message, errors: e.errors.map(errorToWire) };
  if (e instanceof KfdError) return { name: "KfdError", message: e.message, op: e.op, errnoName: e.errnoName, errno: e.errno, hint: e.hint };
  if (e instanceof PolicyError) return { name: "PolicyError", message: e.message, policy: e.policy, hook: e.hook, reason: e.reason };
  if (e instanceof UsageError) return { name: "UsageError", message: e.message };
  if (e instanceof InvariantError) return { name: "InvariantError", message: e.message };
  const err = e as Error;
  return { name: err?.name ?? "Error", message: err?.message ?? String(e) };
}

/** Rebuild a typed error from the wire: the same class (errors.ts), fields and message. */
export function errorFromWire(w: WireError): Error {
  const e = typedErrorOf(w);
  e.message = w.message;
  return e;
}

function typedErrorOf(w: WireError): Error {
  switch (w.name) {
    case "SmiError":
      return new SmiError(w.fn ?? "unknown", w.statusName ?? "UNKNOWN_ERROR", w.status ?? -1);
    case "ConfigError":
      return new ConfigError({ file: w.file ?? "", line: w.line ?? 0, col: w.col ?? 0 }, w.field ?? "", w.expected ?? "");
    case "ConfigErrors":
      return new ConfigErrors((w.errors ?? []).map(errorFromWire).filter((x): x is ConfigError => x instanceof ConfigError));
    case "KfdError":
      return new KfdError(w.op ?? "unknown", w.errnoName ?? "EUNKNOWN", w.errno ?? -1, w.hint ?? "");
    case "PolicyError": {
      const reason = (POLICY_FAILURE_REASONS as readonly string[]).includes(w.reason ?? "") ? (w.reason as PolicyFailureReason) : "exception";
      return new PolicyError(w.policy ?? "unknown", w.hook ?? "unknown", reason, "");
    }
    case "UsageError":
      return new UsageError(w.message);
    case "InvariantError":
      return new InvariantError(w.message);
  }
  const e = new Error(w.message);
  e.name = w.name;
  return e;
}

/** The agent is shutting down: a call refused or dropped. */
function shuttingDown(op: string): SmiError {
  return new SmiError(op, "SHUTTING_DOWN", -1, "the agent is shutting down");
}

/** The error line of a Worker's error event (Bun prefixes it with the source lines around it). */
function workerErrorText(ev: ErrorEvent): string {
  const lines = (ev.message ?? "").split("\n").map((l) => l.trim());
  return lines.find((l) => /^[A-Za-z]*(Error|error): /.test(l)) ?? (lines.find((l) => l !== "") || "unknown error");
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  op: string;
}

class LibraryWorker {
  readonly worker: Worker;
  /** Loaded its binding: calls may go to it. */
  ready = false;
  busy = false;
  hung = false;
  /** Failed, ended or terminated: never used again. */
  dead = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly onLog: (line: string) => void,
    private readonly onFree: (w: LibraryWorker) => void,
    /** It died (uncaught error, or it ended) while the pool still used it. */
    private readonly onLost: (w: LibraryWorker, why: string) => void,
  ) {
    this.worker = new Worker(workerUrl("smi/worker.ts"), { smol: true });
    this.worker.onmessage = (ev: MessageEvent<PoolReply>) => this.received(ev.data);
    // An uncaught error ends a Bun Worker (its close event follows): either way it is gone.
    this.worker.onerror = (ev) => this.lost(`library worker failed: ${workerErrorText(ev as ErrorEvent)}`);
    this.worker.addEventListener("close", (ev) => this.lost(`library worker ended (exit code ${(ev as CloseEvent).code})`));
  }

  private received(m: PoolReply): void {
    if (m.id === -1) {
      if (m.ok && m.log) this.onLog(m.log);
      return;
    }
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(errorFromWire(m.error));
    if (this.pending.size === 0 && !this.dead) {
      this.busy = false;
      this.hung = false;
      this.onFree(this);
    }
  }

  private lost(why: string): void {
    if (this.dead) return;
    this.end((op) => new SmiError(op, "WORKER_FAILED", -1, `${why}; a new worker takes its place, call again`));
    this.onLost(this, why);
  }

  /**
   * Post a call. The promise rejects with TIMEOUT after `leftMs` (what is left of the call's
   * `timeoutMs`); the call itself stays pending in the worker, and `onSettled` runs when it
   * really ends (its late answer, or the worker's end).
   */
  send(
    body: RequestBody | Omit<WorkerInit, "id">,
    leftMs: number,
    timeoutMs: number,
    onTimeout: () => void,
    onSettled?: () => void,
  ): Promise<unknown> {
    if (this.dead) {
      onSettled?.();
      return Promise.reject(new SmiError(body.op, "WORKER_FAILED", -1, "the library worker has ended; call again"));
    }
    const id = this.nextId++;
    this.busy = true;
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        // The call stays pending: a late answer frees the worker again.
        timedOut = true;
        this.hung = true;
        reject(new SmiError(body.op, "TIMEOUT", 8, `no answer from the library in ${timeoutMs} ms; the read may be hung (another GPU's reads go on)`));
        onTimeout();
      }, Math.max(0, leftMs));
      const settle = (): void => {
        clearTimeout(timer);
        onSettled?.();
      };
      this.pending.set(id, {
        resolve: (v) => {
          settle();
          if (!timedOut) resolve(v);
        },
        reject: (e) => {
          settle();
          if (!timedOut) reject(e);
        },
        op: body.op,
      });
      this.worker.postMessage({ ...body, id });
    });
  }

  /** End the thread; every pending call rejects with `errorOf(op)` and its onSettled runs. */
  end(errorOf: (op: string) => Error): void {
    this.dead = true;
    this.busy = false;
    this.worker.terminate();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(errorOf(p.op));
  }
}

export interface PoolOptions {
  spec: SmiBackendSpec;
  sessionShared: SharedArrayBuffer;
  /** Healthy workers wanted. */
  size: number;
  log?: (line: string) => void;
}

interface Queued {
  body: RequestBody;
  timeoutMs: number;
  /** performance.now() by which the call must be answered. */
  deadline: number;
  timer: ReturnType<typeof setTimeout>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onSettled?: () => void;
}

export class SmiPool {
  private readonly workers: LibraryWorker[] = [];
  private readonly queue: Queued[] = [];
  /** close() began: no call is dispatched, no worker started. */
  private closing = false;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** performance.now() before which no replacement starts (after a failed start). */
  private restartAt = 0;
  private restartDelayMs = 0;
  info: SmiLibraryInfo | undefined;
  /** Calls that timed out in a worker (their worker set aside as hung). */
  timeouts = 0;
  /** Workers created since the pool started: the first ones, replacements and restarts. */
  workersStarted = 0;

  private constructor(private readonly opts: PoolOptions) {}

  /**
   * Start `size` workers, each loading its binding.
   * @throws the first worker's load error (SmiError FAIL_LOAD_MODULE, ConfigError...).
   */
  static async start(opts: PoolOptions): Promise<SmiPool> {
    const pool = new SmiPool(opts);
    try {
      await Promise.all(Array.from({ length: Math.max(1, opts.size) }, () => pool.workerAdd()));
    } catch (e) {
      pool.terminate();
      throw e;
    }
    return pool;
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  /** Start one worker. On failure it is ended and removed, and the error thrown. */
  private async workerAdd(): Promise<LibraryWorker> {
    const w = new LibraryWorker(
      (line) => this.log(line),
      (free) => this.dispatch(free),
      (lost, why) => this.workerLost(lost, why),
    );
    this.workers.push(w);
    this.workersStarted++;
    let info: SmiLibraryInfo;
    try {
      info = (await w.send({ op: "init", spec: this.opts.spec, sessionShared: this.opts.sessionShared }, POOL_WORKER_START_TIMEOUT_ms, POOL_WORKER_START_TIMEOUT_ms, () => {})) as SmiLibraryInfo;
    } catch (e) {
      this.workerRemove(w);
      if (!w.dead) w.end(shuttingDown);
      throw e;
    }
    if (w.dead) throw new SmiError("init", "WORKER_FAILED", -1, "the library worker ended right after its start");
    w.ready = true;
    this.info ??= info;
    this.restartDelayMs = 0;
    this.dispatch(w);
    return w;
  }

  private workerRemove(w: LibraryWorker): void {
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
  }

  /** A worker died in use: out of the pool, and replaced (a start's own failure is workerAdd's). */
  private workerLost(w: LibraryWorker, why: string): void {
    this.workerRemove(w);
    if (this.closing || !w.ready) return;
    this.log(`${why}; starting a new one`);
    this.workersTopUp();
  }

  /**
   * Bring the healthy workers (starting, idle or busy: not hung) back to `size`, while fewer
   * than POOL_HUNG_WORKERS_MAX are hung and never beyond `size + POOL_HUNG_WORKERS_MAX` alive;
   * after a failed start, not before its back-off has passed.
   */
  private workersTopUp(): void {
    if (this.closing || this.restartTimer !== undefined) return;
    const wait = this.restartAt - performance.now();
    if (wait > 0) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        this.workersTopUp();
      }, wait);
      return;
    }
    const hung = this.hungWorkers;
    if (hung >= POOL_HUNG_WORKERS_MAX) return;
    const aliveMax = this.opts.size + POOL_HUNG_WORKERS_MAX;
    for (let missing = this.opts.size - (this.workers.length - hung); missing > 0 && this.workers.length < aliveMax; missing--) {
      this.workerAdd().catch((e) => this.startFailed(e as Error));
    }
  }

  private startFailed(e: Error): void {
    if (this.closing) return;
    this.restartDelayMs = Math.min(POOL_WORKER_RESTART_DELAY_MAX_ms, Math.max(POOL_WORKER_RESTART_DELAY_MIN_ms, this.restartDelayMs * 2));
    this.restartAt = performance.now() + this.restartDelayMs;
    this.log(`library worker could not start: ${e.message}; next start in ${this.restartDelayMs} ms`);
    this.workersTopUp();
  }

  /** Workers alive: starting, idle, busy or hung. */
  get workersAlive(): number {
    return this.workers.length;
  }

  /** Workers ready for a call now. */
  get workersIdle(): number {
    return this.workers.filter((w) => w.ready && !w.busy && !w.hung).length;
  }

  /** Workers blocked in a call past its timeout. */
  get hungWorkers(): number {
    return this.workers.filter((w) => w.hung).length;
  }

  /**
   * Run `op` in a free worker. `onSettled` runs when the call really ends in the worker,
   * also after a TIMEOUT (its late answer), or when it is refused or dropped.
   * @throws SmiError TIMEOUT `timeoutMs` after this call (time in the queue included), BUSY
   *   when POOL_QUEUE_MAX calls wait, SHUTTING_DOWN after close(); the op's own errors.
   */
  call<T>(body: RequestBody, timeoutMs = POOL_CALL_TIMEOUT_ms, onSettled?: () => void): Promise<T> {
    if (this.closing) {
      onSettled?.();
      return Promise.reject(shuttingDown(body.op));
    }
    if (this.queue.length >= POOL_QUEUE_MAX) {
      onSettled?.();
      return Promise.reject(new SmiError(body.op, "BUSY", 30, `${POOL_QUEUE_MAX} library calls already wait for a worker`));
    }
    return new Promise<T>((resolve, reject) => {
      const q: Queued = {
        body,
        timeoutMs,
        deadline: performance.now() + timeoutMs,
        timer: setTimeout(() => {
          const i = this.queue.indexOf(q);
          if (i < 0) return;
          this.queue.splice(i, 1);
          this.queuedExpire(q);
        }, timeoutMs),
        resolve: resolve as (v: unknown) => void,
        reject,
        onSettled,
      };
      this.queue.push(q);
      const free = this.workers.find((w) => w.ready && !w.busy && !w.hung);
      if (free) this.dispatch(free);
    });
  }

  /** A call out of the queue at its deadline: it never started, so it has ended too (onSettled). */
  private queuedExpire(q: Queued): void {
    clearTimeout(q.timer);
    q.onSettled?.();
    q.reject(new SmiError(q.body.op, "TIMEOUT", 8, `waited ${q.timeoutMs} ms for a free library worker (${this.hungWorkers} hung, ${this.workers.length} alive)`));
  }

  private dispatch(w: LibraryWorker): void {
    if (!w.ready || w.busy || w.hung || w.dead || this.closing) return;
    for (;;) {
      const q = this.queue.shift();
      if (q === undefined) return;
      clearTimeout(q.timer);
      const left = q.deadline - performance.now();
      if (left <= 0) {
        // Its timer is late (a busy event loop): it timed out in the queue all the same.
        this.queuedExpire(q);
        continue;
      }
      w.send(q.body, left, q.timeoutMs, () => this.hungReplace(), q.onSettled).then(q.resolve, q.reject);
      return;
    }
  }

  /** A call timed out in its worker, now set aside as hung: add a fresh one within the bounds. */
  private hungReplace(): void {
    this.timeouts++;
    this.workersTopUp();
  }

  /** Calls waiting for a worker. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Teardown: new calls are refused and queued ones dropped (SHUTTING_DOWN), the library's
   * teardown runs in a healthy worker (stop, wait for sessions, last shutdown), then every
   * worker ends. Takes at most `waitMs + POOL_TEARDOWN_MARGIN_ms`; undefined when the teardown
   * did not answer in that time (a worker blocked in a hung read, say).
   */
  async close(waitMs: number): Promise<{ shutDown: boolean; openSessions: number } | undefined> {
    // First: from here no call is dispatched and no worker started, also by a teardown timeout.
    this.closing = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    for (const q of this.queue.splice(0)) this.queuedRefuse(q);
    let result: { shutDown: boolean; openSessions: number } | undefined;
    const healthy = this.workers.filter((x) => x.ready && !x.hung);
    // An idle worker runs it at once; a busy one after its current call, within the bound.
    const w = healthy.find((x) => !x.busy) ?? healthy[0];
    if (w !== undefined) {
      const boundMs = waitMs + POOL_TEARDOWN_MARGIN_ms;
      try {
        result = (await w.send({ op: "teardown", waitMs }, boundMs, boundMs, () => {})) as typeof result;
      } catch (e) {
        this.log(`teardown: ${(e as Error).message}`);
      }
    }
    this.terminate();
    return result;
  }

  private queuedRefuse(q: Queued): void {
    clearTimeout(q.timer);
    q.onSettled?.();
    q.reject(shuttingDown(q.body.op));
  }

  /** End every worker now: calls in workers and in the queue reject SHUTTING_DOWN (their onSettled runs). */
  terminate(): void {
    this.closing = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    for (const q of this.queue.splice(0)) this.queuedRefuse(q);
    for (const w of this.workers.splice(0)) w.end(shuttingDown);
  }
}
