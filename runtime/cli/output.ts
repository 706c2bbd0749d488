/**
 * Output files and standard output of the CLI.
 *
 * A file output (`--events`, `--report`) is written to a temporary file in the same folder and
 * renamed over the target only when the command succeeds, so a failed or interrupted run
 * leaves an existing file as it was (an interrupted run may leave its hidden temporary file,
 * `.NAME.svmrt-PID.tmp`, beside it). A target that is not a regular file (a FIFO, /dev/stdout,
 * /dev/null) is written in place: nothing can be renamed over it.
 *
 * Every failure is typed: EPIPE (the reader went away, `| head -1`) is BrokenPipeError, which
 * stops the command quietly with exit 0; any other is IoError naming the file, the flag and
 * the errno (exit 74).
 */
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  openSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { BrokenPipeError, IoError } from "../errors.ts";

/** Most consecutive EAGAIN answers of a write to a non-blocking output before giving up. */
export const WRITE_EAGAIN_RETRIES_MAX = 100_000;

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? "";
}

/** The system's words for an errno error, without the code and syscall repeated. */
function detailOf(e: unknown): string {
  const m = (e as Error)?.message ?? String(e);
  return m.replace(/^[A-Z]+: /, "").replace(/, \w+( '.*')?$/, "").replace(/^[A-Z]+$/, "");
}

/**
 * Write all of `bytes` to `fd`.
 * @throws BrokenPipeError on EPIPE; the system's error otherwise.
 */
function writeAll(fd: number, bytes: Uint8Array, file: string): void {
  let at = 0;
  let again = 0;
  while (at < bytes.length) {
    let n: number;
    try {
      n = writeSync(fd, bytes, at, bytes.length - at);
    } catch (e) {
      const code = errnoOf(e);
      if (code === "EPIPE") throw new BrokenPipeError(file);
      // A non-blocking pipe that is full: wait for the reader (bounded).
      if (code === "EAGAIN" && ++again < WRITE_EAGAIN_RETRIES_MAX) {
        Bun.sleepSync(1);
        continue;
      }
      throw e;
    }
    again = 0;
    at += n;
  }
}

const encoder = new TextEncoder();

/**
 * Write text to standard output (fd 1), synchronously.
 * @throws BrokenPipeError when the reader went away; IoError for any other failure.
 */
export function stdoutWrite(text: string): void {
  try {
    writeAll(1, encoder.encode(text), "stdout");
  } catch (e) {
    if (e instanceof BrokenPipeError) throw e;
    throw new IoError("stdout", "write", errnoOf(e), "", detailOf(e));
  }
}

/** Write text to standard error (fd 2); a failure there cannot be reported anywhere and is ignored. */
export function stderrWrite(text: string): void {
  try {
    writeAll(2, encoder.encode(text), "stderr");
  } catch {
    // Nowhere left to say it.
  }
}

/**
 * Where the output really goes: a regular file through its symlinks (the temporary file sits
 * beside the real one), a FIFO or device as named (/dev/stdout resolves to nothing a rename
 * could use), or the path itself when it does not exist yet.
 */
function targetOf(file: string): { path: string; regular: boolean; exists: boolean; mode?: number } {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return { path: file, regular: true, exists: false };
    throw e;
  }
  if (!st.isFile()) return { path: file, regular: false, exists: true };
  return { path: realpathSync(file), regular: true, exists: true, mode: st.mode & 0o7777 };
}

/**
 * Check, before any work, that `file` can be written: not a folder, and its folder exists and
 * is writable (or the file is a FIFO or device that can be opened for writing).
 * @throws IoError naming the flag, the file and the errno.
 */
export function outputCheck(file: string, flag: string): void {
  if (file === "") throw new IoError("''", "write", "ENOENT", flag, "an empty path names no file");
  let t: ReturnType<typeof targetOf>;
  try {
    t = targetOf(file);
  } catch (e) {
    throw new IoError(file, "write", errnoOf(e), flag, detailOf(e));
  }
  if (t.exists && !t.regular) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(t.path);
    } catch (e) {
      throw new IoError(file, "write", errnoOf(e), flag, detailOf(e));
    }
    if (st.isDirectory()) throw new IoError(file, "write", "EISDIR", flag, "it is a folder");
    try {
      accessSync(t.path, constants.W_OK);
    } catch (e) {
      throw new IoError(file, "write", errnoOf(e), flag, detailOf(e));
    }
    return;
  }
  const dir = dirname(t.path);
  try {
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`${dir} is not a folder`), { code: "ENOTDIR" });
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw new IoError(file, "write", errnoOf(e), flag, `folder ${dir}: ${detailOf(e)}`);
  }
}

/**
 * One output file, written in order and put in place by commit(). Dispose without commit (an
 * error, an early return) removes the temporary file and leaves the target as it was.
 */
export class OutputFile implements Disposable {
  private fd: number;
  private readonly temp: string | null;
  private readonly target: string;
  private done = false;

  private constructor(
    /** The file as the user named it. */
    readonly file: string,
    /** The flag that named it, for messages. */
    readonly flag: string,
    fd: number,
    temp: string | null,
    target: string,
  ) {
    this.fd = fd;
    this.temp = temp;
    this.target = target;
  }

  /**
   * Start writing `file`: a temporary file beside it, or the file itself when it is a FIFO or
   * a device.
   * @throws IoError when it cannot be created.
   */
  static open(file: string, flag: string): OutputFile {
    outputCheck(file, flag);
    const t = targetOf(file);
    if (t.exists && !t.regular) {
      try {
        return new OutputFile(file, flag, openSync(t.path, "w"), null, t.path);
      } catch (e) {
        throw new IoError(file, "open", errnoOf(e), flag, detailOf(e));
      }
    }
    const temp = join(dirname(t.path), `.${basename(t.path)}.svmrt-${process.pid}.tmp`);
    try {
      const fd = openSync(temp, "w", t.mode ?? 0o666);
      return new OutputFile(file, flag, fd, temp, t.path);
    } catch (e) {
      throw new IoError(file, "create", errnoOf(e), flag, `temporary file ${temp}: ${detailOf(e)}`);
    }
  }

  /** True when the output goes straight to a FIFO or device (no rename at the end). */
  get inPlace(): boolean {
    return this.temp === null;
  }

  /**
   * Append text.
   * @throws BrokenPipeError when a FIFO's reader went away; IoError (ENOSPC, EIO...) otherwise.
   */
  write(text: string): void {
    if (this.fd < 0) throw new IoError(this.file, "write", "EBADF", this.flag, "the output is already closed");
    try {
      writeAll(this.fd, encoder.encode(text), this.file);
    } catch (e) {
      if (e instanceof BrokenPipeError) throw e;
      throw new IoError(this.file, "write", errnoOf(e), this.flag, detailOf(e));
    }
  }

  /**
   * Flush to disk and rename the temporary file over the target.
   * @throws IoError; the target is then left as it was.
   */
  commit(): void {
    if (this.done) return;
    try {
      if (this.temp !== null) {
        try {
          if (fstatSync(this.fd).isFile()) fsyncSync(this.fd);
        } catch (e) {
          throw new IoError(this.file, "write", errnoOf(e), this.flag, detailOf(e));
        }
      }
      this.closeFd();
      if (this.temp !== null) {
        try {
          renameSync(this.temp, this.target);
        } catch (e) {
          throw new IoError(this.file, "rename", errnoOf(e), this.flag, detailOf(e));
        }
      }
      this.done = true;
    } finally {
      if (!this.done) this.abort();
    }
  }

  /** Stop without putting anything in place: the temporary file goes, the target stays as it was. */
  abort(): void {
    this.closeFd();
    if (this.temp !== null && !this.done) {
      try {
        unlinkSync(this.temp);
      } catch {
        // Already gone.
      }
    }
    this.done = true;
  }

  private closeFd(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      closeSync(fd);
    } catch (e) {
      // close(2) reports a delayed write error (NFS, quota): the data may be lost.
      if (this.temp !== null && !this.done) throw new IoError(this.file, "write", errnoOf(e), this.flag, detailOf(e));
    }
  }

  [Symbol.dispose](): void {
    if (!this.done) this.abort();
  }
}

/**
 * Write a whole file at once through a temporary file (reports).
 * @throws IoError; an existing file is then left as it was.
 */
export function outputWriteAtomic(file: string, flag: string, text: string): void {
  using out = OutputFile.open(file, flag);
  out.write(text);
  out.commit();
}
