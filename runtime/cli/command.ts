/**
 * The shape of an svmrt command and the argument parsing every command shares.
 * Flags are parsed by node:util parseArgs (strict: unknown flags are usage errors).
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { stderrWrite, stdoutWrite } from "./output.ts";

/** Where a command writes. Tests pass their own to capture output. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** True when stderr is a terminal: progress bars only then. */
  readonly interactive: boolean;
}

export interface Command {
  /** First word on the command line, e.g. `policy`. */
  readonly name: string;
  /** One line for `svmrt --help`. */
  readonly summary: string;
  /** Full text for `svmrt <name> --help`. */
  readonly help: string;
  /** Runs the command; returns its exit code (cli/exit.ts). Throws typed errors. */
  run(argv: string[], io: CliIO): Promise<number>;
}

export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  help: boolean;
}

/** Parse flags strictly; `--help`/`-h` is always accepted. Errors become UsageError. */
export function parseFlags(argv: string[], options: FlagSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: dashValuesJoin(argv, options),
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    const help = values.help === true;
    delete (values as Record<string, unknown>).help;
    return { values: values as Parsed["values"], positionals, help };
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ""));
  }
}

/**
 * `--flag V` as `--flag=V` when the flag takes a value and V starts with '-' (`--seed -1`,
 * `--shard -1/2`, `--out -`): the parser would take V for an option and refuse the command in
 * three lines, where the flag's own check says in one what it expects. A V starting with
 * `--` stays an option (`--out --json` is a missing value). Nothing after `--` is touched.
 */
function dashValuesJoin(argv: readonly string[], options: FlagSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    const spec = a.startsWith("--") ? options[a.slice(2)] : undefined;
    if (spec?.type === "string" && next !== undefined && next.startsWith("-") && !next.startsWith("--")) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** A string flag's value, or undefined. */
export function flagString(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

/**
 * A string flag that names a file or a thing, or undefined when absent.
 * @throws UsageError when it is given empty (`--profile=`): an empty path names nothing.
 */
export function flagNonEmpty(p: Parsed, name: string, expected: string): string | undefined {
  const v = flagString(p, name);
  if (v === "") throw new UsageError(`--${name}: expected ${expected}, got ''`);
  return v;
}

/**
 * An integer flag within [min, max]; `fallback` when absent.
 * @throws UsageError naming the flag, the value and the range.
 */
export function flagInt(p: Parsed, name: string, fallback: number, min: number, max: number): number {
  const raw = flagString(p, name);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`--${name}: expected an integer, got '${raw}'`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name}: expected an integer from ${min} to ${max}, got ${raw}`);
  }
  return n;
}

/**
 * The standard IO of a process, written synchronously: `out` throws BrokenPipeError when the
 * reader went away (`| head -1`), so the command stops its work (cli/output.ts).
 */
export function processIO(): CliIO {
  return {
    out: stdoutWrite,
    err: stderrWrite,
    interactive: Boolean(process.stderr.isTTY),
  };
}
