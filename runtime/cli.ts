#!/usr/bin/env bun
/**
 * svmrt command-line entry: `bun runtime/cli.ts <command> ...` or `svmrt <command> ...`.
 * Each command lives in runtime/cli/<name>.ts; this file only dispatches and maps errors
 * to the exit codes of cli/exit.ts.
 */
import { EMU_SVM_CHILD_COMMAND } from "./agent/emu-svm-source.ts";
import { type CliIO, type Command, processIO } from "./cli/command.ts";
import { EXIT, EXIT_HELP, exitCodeOf } from "./cli/exit.ts";
import { agentJscRestart } from "./cli/agent.ts";
import { commands } from "./cli/commands.ts";
import { BrokenPipeError, InvariantError, UsageError } from "./errors.ts";

export const VERSION = "0.1.0";

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `svmrt ${VERSION}: SVM migration, GPU sampling and amdsmi session policies for AMD GPU hosts

Usage: svmrt <command> [options]        svmrt <command> --help

Commands:
${lines.join("\n")}

Global options:
  -h, --help     show help (also after any command)
  --version      print the version

${EXIT_HELP}
`;
}

/** Run the CLI with arguments (without the program name); returns the exit code. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version") {
    io.out(`${VERSION}\n`);
    return EXIT.ok;
  }
  if (name === EMU_SVM_CHILD_COMMAND) {
    // The agent's emulated SVM source, run by the agent in a child process (not for users).
    const { emuSvmChildMain } = await import("./agent/emu-svm.ts");
    return emuSvmChildMain((line) => io.err(`svmrt ${name}: ${line}\n`));
  }
  const cmd: Command | undefined = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`svmrt: unknown command '${name}'. Run 'svmrt --help' for the list.\n`);
    return EXIT.usage;
  }
  try {
    return await cmd.run(rest, io);
  } catch (e) {
    const code = exitCodeOf(e);
    // The reader of the output went away (`| head`): the work stopped, nothing to say.
    if (e instanceof BrokenPipeError) return code;
    const err = e as Error;
    if (e instanceof UsageError) {
      io.err(`svmrt ${name}: ${err.message}\nRun 'svmrt ${name} --help' for usage.\n`);
    } else if (code === EXIT.internal) {
      const kind = e instanceof InvariantError ? "invariant broken" : "internal error";
      io.err(`svmrt ${name}: ${kind}: ${err?.stack ?? String(e)}\nThis is a bug in svmrt; please report it.\n`);
    } else {
      io.err(`svmrt ${name}: ${err.message}\n`);
    }
    return code;
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  // Returns only when the agent does not restart with its JavaScriptCore options.
  const why = agentJscRestart(argv);
  if (why !== undefined) process.stderr.write(`svmrt agent: ${why}\n`);
  const code = await main(argv);
  process.exit(code);
}
