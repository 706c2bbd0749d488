/**
 * Strict, positioned reading of the simulator's YAML files (profiles, workloads): every
 * error is a ConfigError with file:line:col and the dotted field. Duplicate keys are errors
 * (uniqueKeys), unknown keys are errors, sizes take KiB/MiB/GiB/TiB suffixes.
 */
import { isMap, isScalar, isSeq, type LineCounter, type Node, type YAMLMap, type YAMLSeq } from "yaml";
import { type YamlSource, parseYaml } from "../config.ts";
import { ConfigError, ConfigErrors } from "../errors.ts";

/** Most lines of a simulator YAML file (workloads with long hint lists are the largest). */
export const YAML_LINES_MAX = 200_000;
/** Largest YAML file the simulator reads, bytes. */
export const YAML_BYTES_MAX = 4 * 1024 * 1024;

export class YamlReader {
  readonly lines: LineCounter;
  readonly root: Node | null;

  /** @throws ConfigError on a syntax error, a duplicate key or an oversized file. */
  constructor(
    readonly file: string,
    text: string,
  ) {
    // The project's one YAML gate (size, NUL bytes, syntax, duplicate keys, aliases,
    // nesting): its first error, since the simulator's readers report one at a time.
    let src: YamlSource;
    try {
      src = parseYaml(file, text, YAML_BYTES_MAX, YAML_LINES_MAX);
    } catch (e) {
      if (e instanceof ConfigErrors && e.errors[0]) throw e.errors[0];
      throw e;
    }
    this.lines = src.lines;
    this.root = (src.doc.contents as Node | null) ?? null;
  }

  pos(node: Node | null | undefined): { file: string; line: number; col: number } {
    const off = node?.range?.[0] ?? 0;
    const p = this.lines.linePos(off);
    return { file: this.file, line: p.line, col: p.col };
  }

  error(node: Node | null | undefined, field: string, expected: string, detail?: string): ConfigError {
    return new ConfigError(this.pos(node), field, expected, detail);
  }

  /** The node as a map; `allowed` lists its permitted keys. */
  map(node: Node | null | undefined, field: string, allowed: readonly string[]): YAMLMap<Node, Node> {
    if (!isMap(node)) throw this.error(node, field, "a mapping");
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : "";
      if (!allowed.includes(k)) throw this.error(pair.key as Node, field ? `${field}.${k}` : k, `one of the keys: ${allowed.join(", ")}`);
    }
    return node as YAMLMap<Node, Node>;
  }

  seq(node: Node | null | undefined, field: string): YAMLSeq<Node> {
    if (!isSeq(node)) throw this.error(node, field, "a list");
    return node as YAMLSeq<Node>;
  }

  /** Value node of `key` in map `m`, or undefined. */
  get(m: YAMLMap<Node, Node>, key: string): Node | undefined {
    for (const pair of m.items) if (isScalar(pair.key) && pair.key.value === key) return (pair.value as Node | null) ?? undefined;
    return undefined;
  }

  need(m: YAMLMap<Node, Node>, key: string, field: string): Node {
    const v = this.get(m, key);
    if (v === undefined) throw this.error(m, field, "a value (required)");
    return v;
  }

  str(node: Node | undefined, field: string, fallback?: string): string {
    if (node === undefined && fallback !== undefined) return fallback;
    if (!isScalar(node) || typeof node.value !== "string") throw this.error(node, field, "a string");
    return node.value;
  }

  bool(node: Node | undefined, field: string, fallback: boolean): boolean {
    if (node === undefined) return fallback;
    if (!isScalar(node) || typeof node.value !== "boolean") throw this.error(node, field, "true or false");
    return node.value;
  }

  num(node: Node | undefined, field: string, min: number, max: number, fallback?: number, integer = false): number {
    if (node === undefined && fallback !== undefined) return fallback;
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw this.error(node, field, `${integer ? "an integer" : "a number"} from ${min} to ${max}`, isScalar(node) ? `got ${String(v)}` : undefined);
    }
    return v;
  }

  /** A size in bytes: an integer, or a string like `2MiB`, `32GiB`. */
  bytes(node: Node | undefined, field: string, min: number, max: number, fallback?: number): number {
    if (node === undefined && fallback !== undefined) return fallback;
    const v = isScalar(node) ? node.value : undefined;
    const n = typeof v === "number" ? v : typeof v === "string" ? parseSize(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw this.error(node, field, `a size from ${min} to ${max} bytes (an integer or e.g. 2MiB, 32GiB)`, `got ${String(v)}`);
    }
    return n;
  }
}

const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** `32GiB` -> bytes; NaN when malformed. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(s);
  if (m === null) return Number.NaN;
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2] ?? "B"]!);
}
