/**
 * Test helper: build the KFD C test double (test/native/kfd_double.c) and load it twice
 * through bun:ffi: once as Syscalls (the path the binding uses for libc), once for its
 * control surface (reset, failure script, SMI injection).
 */
import { type KfdDoubleControl, KFD_DOUBLE_SYMBOLS, kfdDoubleControlOpen } from "../../runtime/ffi/kfd-double.ts";
import { syscallsOpen } from "../../runtime/ffi/libc.ts";
import type { Syscalls } from "../../runtime/ffi/syscalls.ts";
import { nativeBuild } from "../native/compile.ts";

export interface KfdDoubleHarness {
  path: string;
  sys: Syscalls;
  ctl: KfdDoubleControl;
}

let harness: KfdDoubleHarness | undefined;

/** The double, loaded once per test process; reset it in each test (ctl.reset). */
export function kfdDoubleLoad(): KfdDoubleHarness {
  if (harness) return harness;
  const path = nativeBuild({ source: "kfd_double.c", shared: true });
  harness = { path, sys: syscallsOpen(path, KFD_DOUBLE_SYMBOLS), ctl: kfdDoubleControlOpen(path) };
  return harness;
}
