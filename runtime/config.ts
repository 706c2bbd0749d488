/**
 * Reading YAML configuration (policies, workloads, profiles) safely, and validating it
 * against a TypeBox schema with every error placed at file:line:col.
 *
 * Bounds: input size is capped before parsing, aliases are capped (alias bombs), keys must
 * be unique, nesting depth is capped; parse errors and schema errors are all collected so
 * the user sees every problem at once.
 */
import type { TSchema } from "@sinclair/typebox/type";
import { Errors } from "@sinclair/typebox/errors";
import { type Document, LineCounter, isMap, isNode, isScalar, isSeq, parseDocument } from "yaml";
import { readFileSync, statSync } from "node:fs";
import { ConfigError, ConfigErrors } from "./errors.ts";

/** Largest configuration file read, bytes. */
export const CONFIG_FILE_BYTES_MAX = 256 * 1024;
/** Most alias dereferences in one document (the yaml package's default is 100). */
export const CONFIG_ALIASES_MAX = 50;
/** Deepest nesting of maps and sequences accepted. */
export const CONFIG_DEPTH_MAX = 32;
/**
 * Most lines of a configuration file. The yaml package parses in linear time but slowly
 * (~30 us a line here), and policy folders are re-read on every rescan: a cap keeps one
 * file from holding the event loop.
 */
export const CONFIG_LINES_MAX = 5_000;
/** Most errors reported for one file. */
export const CONFIG_ERRORS_MAX = 50;

export interface YamlSource {
  file: string;
  text: string;
  doc: Document.Parsed;
  lines: LineCounter;
  /** The document as plain data. */
  data: unknown;
}

/** Position of a byte offset in the file. */
export function positionAt(src: { file: string; lines: LineCounter }, offset: number) {
  const p = src.lines.linePos(offset);
  return { file: src.file, line: p.line, col: p.col };
}

/**
 * Position of the node at `path` (keys and indexes), or of its nearest existing ancestor.
 * `key: true` points at the key of a map entry instead of its value (for unknown fields).
 */
export function positionOf(src: YamlSource, path: (string | number)[], key = false) {
  for (let n = path.length; n >= 0; n--) {
    const sub = path.slice(0, n);
    if (key && n === path.length && n > 0) {
      const parent = sub.length > 1 ? src.doc.getIn(sub.slice(0, -1), true) : src.doc.contents;
      const items = (parent as { items?: { key?: unknown }[] } | null)?.items;
      const pair = items?.find((it) => isNode(it.key) && (it.key as { value?: unknown }).value === sub.at(-1));
      const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
      if (range) return positionAt(src, range[0]);
      continue;
    }
    const node = n === 0 ? src.doc.contents : src.doc.getIn(sub, true);
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (range) return positionAt(src, range[0]);
  }
  return { file: src.file, line: 1, col: 1 };
}

function depthOf(v: unknown, depth = 0): number {
  if (depth > CONFIG_DEPTH_MAX || v === null || typeof v !== "object") return depth;
  let max = depth;
  for (const child of Object.values(v)) {
    max = Math.max(max, depthOf(child, depth + 1));
    if (max > CONFIG_DEPTH_MAX) break;
  }
  return max;
}

/**
 * Parse YAML text. @throws ConfigErrors for size, syntax, duplicate keys, alias bombs,
 * nesting, binary garbage; each error at its file:line:col.
 */
export function parseYaml(file: string, text: string, maxBytes = CONFIG_FILE_BYTES_MAX, maxLines = CONFIG_LINES_MAX): YamlSource {
  const lines = new LineCounter();
  const at = (offset: number) => positionAt({ file, lines }, offset);
  if (text.length > maxBytes) {
    throw new ConfigErrors([new ConfigError({ file, line: 1, col: 1 }, "", `a file of at most ${maxBytes} bytes`, `it has ${text.length}`)]);
  }
  let lineCount = 1;
  for (let i = text.indexOf("\n"); i >= 0 && lineCount <= maxLines; i = text.indexOf("\n", i + 1)) lineCount++;
  if (lineCount > maxLines) {
    throw new ConfigErrors([new ConfigError({ file, line: maxLines + 1, col: 1 }, "", `a file of at most ${maxLines} lines`)]);
  }
  const nul = text.indexOf("\u0000");
  if (nul >= 0) {
    throw new ConfigErrors([new ConfigError({ file, line: 1, col: 1 }, "", "UTF-8 YAML text", "the file contains binary data")]);
  }
  // Duplicate keys are checked below in linear time: the package's uniqueKeys is quadratic
  // in the number of keys of a map (measured: 1.7 s for 10,000 keys).
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false, strict: true });
  const errors: ConfigError[] = duplicateKeys(doc.contents, file, lines);
  for (const e of [...doc.errors, ...doc.warnings].slice(0, CONFIG_ERRORS_MAX)) {
    const pos = at(e.pos[0]);
    const msg = e.message.split("\n")[0]!;
    errors.push(new ConfigError(pos, "", "valid YAML", `${e.code}: ${msg}`));
  }
  if (errors.length) throw new ConfigErrors(errors);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: CONFIG_ALIASES_MAX });
  } catch (e) {
    throw new ConfigErrors([new ConfigError({ file, line: 1, col: 1 }, "", "YAML without alias bombs", (e as Error).message)]);
  }
  if (depthOf(data) > CONFIG_DEPTH_MAX) {
    throw new ConfigErrors([new ConfigError({ file, line: 1, col: 1 }, "", `nesting of at most ${CONFIG_DEPTH_MAX} levels`)]);
  }
  return { file, text, doc, lines, data };
}

/** Duplicate keys of every map in the document, each at the repeated key's position. */
function duplicateKeys(root: unknown, file: string, lines: LineCounter): ConfigError[] {
  const out: ConfigError[] = [];
  const stack: unknown[] = [root];
  while (stack.length > 0 && out.length < CONFIG_ERRORS_MAX) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (seen.has(key)) {
          const off = (pair.key as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
          out.push(new ConfigError(positionAt({ file, lines }, off), String(key), "valid YAML", "DUPLICATE_KEY: Map keys must be unique"));
        }
        seen.add(key);
        stack.push(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(item);
    }
  }
  return out;
}

/** Split a JSON pointer (`/spec/params/x`) into path segments. */
export function pointerPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** What a schema expected, in words. */
function expectedText(schema: TSchema & Record<string, unknown>, fallback: string): string {
  const options = (schema.anyOf as TSchema[] | undefined)?.map((s) => (s as { const?: unknown }).const);
  if (options?.length && options.every((o) => o !== undefined)) return `one of ${options.map((o) => JSON.stringify(o)).join(", ")}`;
  if (typeof schema.description === "string" && /Expected union/.test(fallback)) return schema.description;
  return fallback.replace(/^Expected /, "");
}

/**
 * Validate `src.data` (or `value`, with `basePath` its location in the document) against a
 * TypeBox schema. Returns ConfigErrors, one per offending field, each at file:line:col.
 */
export function schemaErrors(
  src: YamlSource,
  schema: TSchema,
  value: unknown = src.data,
  basePath: (string | number)[] = [],
): ConfigError[] {
  const out: ConfigError[] = [];
  const seen = new Set<string>();
  for (const e of Errors(schema, value)) {
    if (seen.has(e.path)) continue;
    seen.add(e.path);
    const path = [...basePath, ...pointerPath(e.path)];
    const field = path.join(".");
    const unknownField = e.message === "Unexpected property";
    const pos = positionOf(src, path, unknownField);
    const expected = unknownField ? "no such field here" : expectedText(e.schema as TSchema & Record<string, unknown>, e.message);
    // JSON has no Infinity or NaN (YAML's .inf, .nan): name them as they are, not as null.
    const shown = typeof e.value === "number" && !Number.isFinite(e.value) ? String(e.value) : JSON.stringify(e.value)?.slice(0, 80);
    const got = e.value === undefined ? "it is missing" : `got ${shown}`;
    out.push(new ConfigError(pos, field, unknownField ? "unknown field" : expected, unknownField ? undefined : got));
    if (out.length >= CONFIG_ERRORS_MAX) break;
  }
  return out;
}

/**
 * Why a path could not be looked up or listed, for a ConfigError's detail: `no such file`, or
 * the errno name and the system's words (`EACCES: permission denied`), without the
 * `, stat 'PATH'` tail the system adds (the message names the path already).
 */
export function pathErrorDetail(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code ?? "";
  if (code === "ENOENT") return "no such file";
  const words = ((e as Error)?.message ?? String(e)).replace(/^[A-Z]+: /, "").replace(/, \w+( '.*')?$/, "");
  return code === "" ? words : `${code}: ${words}`;
}

/**
 * Read a configuration file as UTF-8, refusing a missing file, an oversized one (before
 * reading it) and binary data. `expected` says what the file should be, for the message.
 * @throws ConfigError naming the file.
 */
export function readConfigFile(file: string, maxBytes = CONFIG_FILE_BYTES_MAX, expected = "an existing file"): string {
  const at = { file, line: 1, col: 1 };
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new ConfigError(at, "", expected, "not a regular file");
    size = st.size;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(at, "", expected, pathErrorDetail(e));
  }
  if (size > maxBytes) throw new ConfigError(at, "", `a file of at most ${maxBytes} bytes`, `it has ${size}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    // Unreadable: EACCES, EIO... named with its errno (the caller's exit code is the input's).
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw new ConfigError(at, "", expected, `${code ? `${code}: ` : ""}cannot be read`);
  }
  if (bytes.length > maxBytes) throw new ConfigError(at, "", `a file of at most ${maxBytes} bytes`, `it has ${bytes.length}`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(at, "", "UTF-8 text", "the file contains binary data");
  }
}
