/**
 * Hot reload of a policy folder. Files are loaded and validated aside (YAML, schema,
 * plugin, params, inline tests) and swapped in atomically only when all of that passes;
 * a file that fails keeps its last good revision serving and the failure is reported.
 * Change detection: fs.watch (debounced) plus a periodic rescan, because watches miss
 * events on some filesystems; a file counts as changed when its revision (content hash of
 * the YAML and its plugin) changes.
 */
import { type FSWatcher, watch } from "node:fs";
import { resolve } from "node:path";
import { ConfigErrors, PolicyError } from "../errors.ts";
import { findPolicyFiles } from "./files.ts";
import { readPolicySpec } from "./loader.ts";
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
  /** The revision serving now; undefined when the file never loaded. */
  policy?: Policy;
  /** The newest attempt's failure, when it failed (the last good revision keeps serving). */
  error?: string;
  /** Revision of the newest content seen, loaded or not. */
  seenRevision?: string;
}

export type ReloadEvent =
  | { type: "loaded"; file: string; name: string; revision: string; replaced?: string }
  | { type: "rejected"; file: string; revision?: string; error: string; serving?: string }
  | { type: "removed"; file: string; name: string };

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
    private readonly opts: PolicyLoadOptions & { onEvent?: (e: ReloadEvent) => void } = {},
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

  /** Rescan now. Reloads are serialised: one at a time, in order. */
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

  private async reloadFile(file: string): Promise<void> {
    const slot = this.slots.get(file) ?? { file };
    this.slots.set(file, slot);
    let revision: string | undefined;
    try {
      const spec = await readPolicySpec(file, this.opts);
      revision = spec.revision;
      if (revision === slot.seenRevision) return; // unchanged (including unchanged-and-broken)
      slot.seenRevision = revision;
      const fresh = await Policy.fromSpec(spec, this.opts);
      const failed = (await runPolicyTests(fresh)).filter((t) => !t.ok);
      if (failed.length) {
        fresh.dispose();
        throw new Error(`inline tests failed: ${failed.map((t) => `'${t.name}': ${t.message}`).join("; ")}`);
      }
      const old = slot.policy;
      slot.policy = fresh; // the swap: one assignment, readers see old or new, never half
      slot.error = undefined;
      this.emit({ type: "loaded", file, name: fresh.name, revision, replaced: old?.spec.revision });
      if (old) this.retire(old);
    } catch (e) {
      if (!(e instanceof ConfigErrors || e instanceof PolicyError || e instanceof Error)) throw e;
      const key = revision ?? `unreadable:${(e as Error).message}`;
      if (revision === undefined && slot.seenRevision === key) return; // same broken file: reported already
      slot.seenRevision = key;
      slot.error = (e as Error).message;
      this.emit({ type: "rejected", file, revision, error: slot.error, serving: slot.policy?.spec.revision });
    }
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
