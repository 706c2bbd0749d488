/**
 * The agent's library Workers, seen from the main thread (which never calls a device
 * library). A call goes to an idle worker; a call that gets no answer within its timeout is
 * reported as a TIMEOUT and its worker is set aside as hung (a thread blocked in a native
 * call cannot be interrupted): a fresh worker takes its place, up to POOL_HUNG_WORKERS_MAX,
 * so one hung read never blocks the other GPUs. A hung worker that answers at last rejoins
 * the pool.
 */
import { SmiError } from "../errors.ts";
import type { SmiBackendSpec } from "./backend.ts";
import type { SmiLibraryInfo } from "./library.ts";

/** Calls waiting for a worker beyond this are refused (the sampler skips that tick). */
export const POOL_QUEUE_MAX = 1024;
/** Workers set aside as hung at most; beyond it calls queue for the healthy ones. */
export const POOL_HUNG_WORKERS_MAX = 8;
/** Default answer timeout of a call, ms. */
export const POOL_CALL_TIMEOUT_ms = 5_000;
/** Longest a worker may take to load its library binding, ms. */
export const POOL_WORKER_START_TIMEOUT_ms = 30_000;

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

export interface WireError {
  name: string;
  message: string;
  fn?: string;
  statusName?: string;
  status?: number;
}

export type PoolReply = { id: number; ok: true; value?: unknown; log?: string } | { id: number; ok: false; error: WireError };

/** Rebuild a typed error from the wire. */
function errorFrom(w: WireError): Error {
  if (w.statusName !== undefined && w.fn !== undefined) {
    const e = new SmiError(w.fn, w.statusName, w.status ?? -1);
    e.message = w.message;
    return e;
  }
  const e = new Error(w.message);
  e.name = w.name;
  return e;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout> | undefined;
  op: string;
}

class LibraryWorker {
  readonly worker: Worker;
  busy = false;
  hung = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly onLog: (line: string) => void,
    private readonly onFree: (w: LibraryWorker) => void,
  ) {
    this.worker = new Worker(new URL("./worker.ts", import.meta.url).href, { smol: true });
    this.worker.onmessage = (ev: MessageEvent<PoolReply>) => this.received(ev.data);
    this.worker.onerror = (ev) => {
      const err = new Error(`library worker failed: ${(ev as ErrorEvent).message ?? "unknown error"}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  private received(m: PoolReply): void {
    if (m.id === -1) {
      if (m.ok && m.log) this.onLog(m.log);
      return;
    }
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (m.ok) p.resolve(m.value);
    else p.reject(errorFrom(m.error));
    if (this.pending.size === 0) {
      this.busy = false;
      this.hung = false;
      this.onFree(this);
    }
  }

  /**
   * Post a call. The promise rejects with TIMEOUT after `timeoutMs`; the call itself stays
   * pending in the worker, and `onSettled` runs when it really ends (its late answer).
   */
  send(body: RequestBody | Omit<WorkerInit, "id">, timeoutMs: number, onTimeout: () => void, onSettled?: () => void): Promise<unknown> {
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
      }, timeoutMs);
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
        timer,
        op: body.op,
      });
      this.worker.postMessage({ ...body, id });
    });
  }

  terminate(): void {
    for (const p of this.pending.values()) if (p.timer !== undefined) clearTimeout(p.timer);
    this.pending.clear();
    this.worker.terminate();
  }
}

export interface PoolOptions {
  spec: SmiBackendSpec;
  sessionShared: SharedArrayBuffer;
  /** Healthy workers wanted. */
  size: number;
  log?: (line: string) => void;
}

export class SmiPool {
  private readonly workers: LibraryWorker[] = [];
  private readonly queue: { body: RequestBody; timeoutMs: number; resolve(v: unknown): void; reject(e: unknown): void; onSettled?: () => void }[] = [];
  private closed = false;
  info: SmiLibraryInfo | undefined;
  /** Calls that timed out (their worker set aside as hung). */
  timeouts = 0;

  private constructor(private readonly opts: PoolOptions) {}

  /**
   * Start `size` workers, each loading its binding.
   * @throws the first worker's load error (SmiError FAIL_LOAD_MODULE, ConfigError text...).
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

  private async workerAdd(): Promise<LibraryWorker> {
    const w = new LibraryWorker(this.opts.log ?? (() => {}), (free) => this.dispatch(free));
    this.workers.push(w);
    const info = (await w.send({ op: "init", spec: this.opts.spec, sessionShared: this.opts.sessionShared }, POOL_WORKER_START_TIMEOUT_ms, () => {})) as SmiLibraryInfo;
    this.info ??= info;
    this.dispatch(w);
    return w;
  }

  /** Workers blocked in a call past its timeout. */
  get hungWorkers(): number {
    return this.workers.filter((w) => w.hung).length;
  }

  /**
   * Run `op` in a free worker. `onSettled` runs when the call really ends in the worker,
   * also after a TIMEOUT (its late answer), or when it is refused or dropped.
   * @throws SmiError TIMEOUT after `timeoutMs`, BUSY when POOL_QUEUE_MAX calls wait; the op's own errors.
   */
  call<T>(body: RequestBody, timeoutMs = POOL_CALL_TIMEOUT_ms, onSettled?: () => void): Promise<T> {
    if (this.closed) return Promise.reject(new SmiError(body.op, "SHUTTING_DOWN", -1, "the agent is shutting down"));
    if (this.queue.length >= POOL_QUEUE_MAX) {
      return Promise.reject(new SmiError(body.op, "BUSY", 30, `${POOL_QUEUE_MAX} library calls already wait for a worker`));
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ body, timeoutMs, resolve: resolve as (v: unknown) => void, reject, onSettled });
      const free = this.workers.find((w) => !w.busy && !w.hung);
      if (free) this.dispatch(free);
    });
  }

  private dispatch(w: LibraryWorker): void {
    if (w.busy || w.hung || this.closed) return;
    const next = this.queue.shift();
    if (next === undefined) return;
    w.send(next.body, next.timeoutMs, () => this.hungReplace(), next.onSettled).then(next.resolve, next.reject);
  }

  /** A worker hung: add a fresh one while the hung bound allows. */
  private hungReplace(): void {
    this.timeouts++;
    const hung = this.hungWorkers;
    const healthy = this.workers.length - hung;
    if (this.closed || hung > POOL_HUNG_WORKERS_MAX || healthy >= this.opts.size) return;
    this.workerAdd().catch((e) => this.opts.log?.(`library worker could not start: ${(e as Error).message}`));
  }

  /** Calls waiting for a worker. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Teardown: the library's teardown runs in a healthy worker (stop, wait for sessions, last
   * shutdown), then every worker ends.
   */
  async close(waitMs: number): Promise<{ shutDown: boolean; openSessions: number } | undefined> {
    let result: { shutDown: boolean; openSessions: number } | undefined;
    const w = this.workers.find((x) => !x.hung);
    for (const q of this.queue.splice(0)) q.reject(new SmiError(q.body.op, "SHUTTING_DOWN", -1, "the agent is shutting down"));
    if (w !== undefined) {
      try {
        // Wait for the worker's current call, then its teardown, within the bound.
        result = (await new Promise((resolve, reject) => {
          this.queue.unshift({ body: { op: "teardown", waitMs }, timeoutMs: waitMs + 1_000, resolve, reject });
          this.dispatch(w);
        })) as typeof result;
      } catch (e) {
        this.opts.log?.(`teardown: ${(e as Error).message}`);
      }
    }
    this.terminate();
    return result;
  }

  terminate(): void {
    this.closed = true;
    for (const w of this.workers.splice(0)) w.terminate();
  }
}
