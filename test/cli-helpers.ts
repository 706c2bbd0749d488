/** Run the CLI in-process with captured output. */
import { main } from "../runtime/cli.ts";

export async function runCli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io = {
    out(t: string) {
      out += t;
    },
    err(t: string) {
      err += t;
    },
    interactive: false,
  };
  const code = await main(argv, io);
  return { code, out, err };
}

/** The timed progress lines `compare` prints without a terminal: wall time decides how many. */
export const COMPARE_PROGRESS_LINES = /^svmrt compare: \d+\/\d+ cells done, \d+ s elapsed\n/gm;
