/**
 * Hot reload of a policy folder. Files are loaded and validated aside (YAML, schema,
 * plugin, params, inline tests) and swapped in atomically only when all of that passes;
 * a file that fails keeps its last good revision serving and the failure is reported.
 * Change detection: fs.watch (debounced) plus a periodic rescan, because watches miss
 * events on some filesystems; a file counts as changed when its revision (content hash of
 * the YAML and its plugin) changes.
 */
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { resolve } from "node:path";
import { findPolicyFiles } from "./files.ts";
import { type PolicySpec, readPolicySpec } from "./loader.ts";
import { Policy, type PolicyLoadOptions } from "./policy.ts";
import { runPolicyTests } from "./testing.ts";

/** Quiet time after the last file event before reloading. */
export const RELOAD_DEBOUNCE_MS = 250;
/** Rescan period when no event arrives. */
export const RESCAN_INTERVAL_MS = 5_000;
/** How long a replaced policy stays alive for calls already holding it. */
export const REPLACED_POLICY_GRACE_MS = 5_000;

export interface PolicySlot {
  file: string;
  /** Hash of the YAML bytes and its plugin's bytes when last read. */
  fingerprint?: string;
  /** The plugin file the YAML named when last read. */
  pluginPath?: string;
  /** Load again on the next rescan even if the bytes did not change (a passing failure). */
  retry?: boolean;
  /** The revision serving now; undefined when the file never loaded. */
  policy?: Policy;
  /** The newest attempt's failure, when it failed (the last good revision keeps serving). */
  error?: string;
  /** A policy that loaded and passed its tests but is not served (PolicyFolder `serve` said no). */
  validated?: { name: string; kind: string; revision: string };
}

export type ReloadEvent =
  | { type: "loaded"; file: string; name: string; revision: string; replaced?: string }
  | { type: "rejected"; file: string; revision?: string; error: string; serving?: string }
  | { type: "removed"; file: string; name: string };

/** Cheap identity of a policy file and its plugin: wyhash of their bytes ("" when unreadable). */
function fingerprintOf(file: string, pluginPath: string | undefined): string {
  const hash = (p: string | undefined) => {
    if (p === undefined) return "-";
    try {
      return Bun.hash(readFileSync(p)).toString(16);
    } catch {
      return "";
    }
  };
  return `${hash(file)}:${hash(pluginPath)}`;
}

export class PolicyFolder implements Disposable {
  readonly dir: string;
  private readonly slots = new Map<string, PolicySlot>();
  private watcher: FSWatcher | undefined;
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private rescan: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    dir: string,
    private readonly opts: PolicyLoadOptions & {
      onEvent?: (e: ReloadEvent) => void;
      /**
       * Which policies are kept serving (default all). The others are loaded and tested
       * on every change, reported in `status()` as `validated`, and their sandboxes freed.
       */
      serve?: (spec: PolicySpec) => boolean;
    } = {},
  ) {
    this.dir = resolve(dir);
  }

  /** Load everything once, then watch. */
  async start(watchFiles = true): Promise<void> {
    await this.reload();
    if (!watchFiles) return;
    try {
      this.watcher = watch(this.dir, { recursive: true }, () => this.schedule());
    } catch {
      // No watch support: the periodic rescan still picks changes up.
    }
    this.rescan = setInterval(() => this.schedule(), RESCAN_INTERVAL_MS);
    this.rescan.unref?.();
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), RELOAD_DEBOUNCE_MS);
  }

  /** Rescan now. Reloads are serialised: one at a time, in order, files sorted by path. */
  reload(): Promise<void> {
    this.running = this.running.then(() => this.reloadOnce());
    return this.running;
  }

  private emit(e: ReloadEvent): void {
    this.opts.onEvent?.(e);
  }

  private async reloadOnce(): Promise<void> {
    if (this.closed) return;
    let files: string[];
    try {
      files = findPolicyFiles([this.dir]).map((f) => resolve(f));
    } catch (e) {
      this.emit({ type: "rejected", file: this.dir, error: (e as Error).message });
      return;
    }
    const present = new Set(files);
    for (const [file, slot] of this.slots) {
      if (present.has(file)) continue;
      this.slots.delete(file);
      if (slot.policy) {
        this.emit({ type: "removed", file, name: slot.policy.name });
        this.retire(slot.policy);
      }
    }
    for (const file of files) await this.reloadFile(file);
  }

  /** Which file serves a policy name now. */
  private servingFileOf(name: string): string | undefined {
    for (const [file, s] of this.slots) if (s.policy?.name === name) return file;
    return undefined;
  }

  /** Record a failure; report it unless it is the one already reported for this file. */
  private reject(slot: PolicySlot, error: string, revision?: string): void {
    if (slot.error === error) return;
    slot.error = error;
    this.emit({ type: "rejected", file: slot.file, revision, error, serving: slot.policy?.spec.revision });
  }

  private async reloadFile(file: string): Promise<void> {
    const slot = this.slots.get(file) ?? { file };
    this.slots.set(file, slot);
    // Unchanged bytes (YAML and its plugin) and nothing to retry: no parse, no load.
    const before = fingerprintOf(file, slot.pluginPath);
    if (before === slot.fingerprint && !slot.retry) return;
    let spec: PolicySpec;
    try {
      spec = await readPolicySpec(file, this.opts);
    } catch (e) {
      // A configuration error is a property of these bytes: not retried until they change.
      slot.fingerprint = before;
      slot.retry = false;
      this.reject(slot, (e as Error).message);
      return;
    }
    if (this.closed) return;
    slot.pluginPath = spec.pluginPath;
    const fingerprint = fingerprintOf(file, spec.pluginPath);
    slot.fingerprint = fingerprint;
    if (slot.policy?.spec.revision === spec.revision || slot.validated?.revision === spec.revision) {
      slot.retry = false;
      return;
    }
    const owner = this.servingFileOf(spec.name);
    if (owner !== undefined && owner !== file) {
      // Retried on every rescan: it may serve once the other file goes away.
      slot.retry = true;
      this.reject(slot, `policy name '${spec.name}' is already served by ${owner}`, spec.revision);
      return;
    }
    let fresh: Policy;
    try {
      // Load and test aside; then serve a fresh instance, so the inline tests leave no
      // state behind in the plugin that serves.
      const tested = await Policy.fromSpec(spec, this.opts);
      try {
        if (this.closed) return;
        const failed = (await runPolicyTests(tested)).filter((t) => !t.ok);
        if (failed.length) throw new Error(`inline tests failed: ${failed.map((t) => `'${t.name}': ${t.message}`).join("; ")}`);
      } finally {
        tested.dispose();
      }
      if (this.closed) return;
      if (this.opts.serve?.(spec) === false) {
        const old = slot.policy;
        slot.policy = undefined;
        slot.validated = { name: spec.name, kind: spec.kind, revision: spec.revision };
        slot.error = undefined;
        slot.retry = false;
        this.emit({ type: "loaded", file, name: spec.name, revision: spec.revision, replaced: old?.spec.revision });
        if (old) this.retire(old);
        return;
      }
      fresh = await Policy.fromSpec(spec, this.opts);
    } catch (e) {
      // The plugin failed to load or its tests failed: possibly a passing cause (a loaded
      // host, memory), so it is retried on each rescan; reported once per distinct error.
      slot.retry = true;
      this.reject(slot, (e as Error).message, spec.revision);
      return;
    }
    if (this.closed) {
      fresh.dispose();
      return;
    }
    const old = slot.policy;
    slot.policy = fresh; // the swap: one assignment, readers see old or new, never half
    slot.validated = undefined;
    slot.error = undefined;
    slot.retry = false;
    this.emit({ type: "loaded", file, name: fresh.name, revision: spec.revision, replaced: old?.spec.revision });
    if (old) this.retire(old);
  }

  private retire(p: Policy): void {
    const t = setTimeout(() => p.dispose(), REPLACED_POLICY_GRACE_MS);
    t.unref?.();
  }

  /** The serving policy of that name, if any. */
  get(name: string): Policy | undefined {
    for (const s of this.slots.values()) if (s.policy?.name === name) return s.policy;
    return undefined;
  }

  /** Every file with what serves and what failed. */
  status(): PolicySlot[] {
    return [...this.slots.values()].sort((a, b) => a.file.localeCompare(b.file));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.rescan);
    this.watcher?.close();
    for (const s of this.slots.values()) s.policy?.dispose();
    this.slots.clear();
  }
}
