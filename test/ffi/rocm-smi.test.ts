/**
 * The rocm-smi binding against the REAL librocm_smi64 (Debian's librocm-smi64-1 5.2.3; CI
 * installs it). Without the library these tests fail and say how to install it: they never
 * skip silently. On a host without the amdgpu driver (CI, developer machines) rsmi_init
 * answers INIT_ERROR; the init test is skipped only where a KFD exists.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, realpathSync } from "node:fs";
import { EXIT, exitCodeOf } from "../../runtime/cli/exit.ts";
import { SmiError } from "../../runtime/errors.ts";
import {
  amdsmiUuidText,
  ROCM_SMI_LIB_CANDIDATES,
  ROCM_SMI_LIB_ENV,
  ROCM_SMI_OPTIONAL_SYMBOLS,
  RSMI_STATUS,
  rocmSmiOpen,
  rsmiBdfText,
  rsmiStatusName,
} from "../../runtime/ffi/rocm-smi.ts";
import type { SmiLibrary } from "../../runtime/smi/library.ts";

const DEBIAN_LIB = "/usr/lib/librocm_smi64.so.1";
const HOST_HAS_KFD = existsSync("/sys/class/kfd");

/** Open the real library, or fail with what to do. */
function openReal(path?: string): SmiLibrary {
  try {
    return rocmSmiOpen(path === undefined ? {} : { path });
  } catch (e) {
    throw new Error(
      `librocm_smi64 is not loadable here: install it (apt-get install librocm-smi64-1; CI does) to run these tests.\n${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

function smiError(fn: () => unknown): SmiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SmiError) return e;
    throw e;
  }
  throw new Error("no SmiError thrown");
}

/** Run with an environment variable set (or removed), restoring it after. */
function withEnv<T>(name: string, value: string | undefined, f: () => T): T {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

describe("librocm_smi64 (real library)", () => {
  test("is installed where Debian puts it", () => {
    if (!existsSync(DEBIAN_LIB)) throw new Error(`${DEBIAN_LIB} is missing: install librocm-smi64-1 (apt-get install librocm-smi64-1; CI does)`);
  });

  test("loads from the default candidates", () => {
    using lib = withEnv(ROCM_SMI_LIB_ENV, undefined, () => openReal());
    expect(lib.info.backend).toBe("rocm-smi");
    expect(lib.info.emulated).toBe(false);
    // A bare candidate is resolved to an absolute path the way the loader searches.
    expect(lib.info.path.startsWith("/")).toBe(true);
    expect(ROCM_SMI_LIB_CANDIDATES.some((c) => lib.info.path.endsWith(`/${c.split("/").pop()}`))).toBe(true);
    expect(realpathSync(lib.info.path)).toBe(realpathSync("/usr/lib/librocm_smi64.so.1"));
  });

  test("Debian's 5.2.3 reports its version and its missing optional entry points", () => {
    using lib = openReal(DEBIAN_LIB);
    // Debian's build carries no version: rsmi_version_get says 1.0.0, build text "0".
    expect(lib.info.version).toBe("1.0.0");
    // 5.2.3 lacks exactly the ROCm 6 additions; every other entry point (and every core one) is there.
    expect(lib.info.missingOptional).toEqual(["rsmi_dev_guid_get", "rsmi_dev_current_socket_power_get"]);
    expect(ROCM_SMI_OPTIONAL_SYMBOLS).toContain("rsmi_event_notification_get");
  });

  test.skipIf(HOST_HAS_KFD)("init without a KFD fails with INIT_ERROR (8) from rsmi_init, which the CLI maps to exit 5", () => {
    using lib = openReal(DEBIAN_LIB);
    const e = smiError(() => lib.init());
    expect(e.fn).toBe("rsmi_init");
    expect(e.statusName).toBe("INIT_ERROR");
    expect(e.status).toBe(8);
    expect(e.message).toContain("An error occurred during initialization");
    expect(e.message).toContain("no amdgpu driver / KFD on this host?");
    expect(exitCodeOf(e)).toBe(EXIT.noDevice);
    // A failed init leaves the library uninitialised: no device, and a shutdown is refused.
    expect(lib.gpuHandles()).toEqual([]);
    expect(smiError(() => lib.shutDown()).statusName).toBe("INIT_ERROR");
  });

  test("a reading without init is an SmiError, never a crash of the library", () => {
    using lib = openReal(DEBIAN_LIB);
    // rsmi_dev_temp_metric_get itself segfaults before init: the binding must not call it.
    const t = smiError(() => lib.gpuTemperature(0n, "edge"));
    expect([t.fn, t.statusName, t.status]).toEqual(["rsmi_dev_temp_metric_get", "INVALID_ARGS", 1]);
    expect(t.message).toContain("not initialised");
    for (const read of [
      () => lib.gpuStatic(0n),
      () => lib.gpuPower(0n),
      () => lib.gpuActivity(0n),
      () => lib.gpuMemory(0n, "vram"),
      () => lib.gpuXgmi(0n),
      () => lib.gpuLink(0n, 1n),
      () => lib.gpuPcie(0n),
      () => lib.gpuEcc(0n),
      () => lib.eventsStart(0n, 2n),
      () => lib.eventsStop(0n),
    ]) {
      expect(smiError(read).statusName).toBe("INVALID_ARGS");
    }
    expect(smiError(() => lib.eventsRead(0, 4)).statusName).toBe("INIT_ERROR");
    expect(smiError(() => lib.gpuHandleFromUuid("2eff74a1-0000-1000-80fe-9cea14a6b148")).statusName).toBe("NOT_FOUND");
  });

  test("a bad path is FAIL_LOAD_MODULE naming the path and the way out", () => {
    const e = smiError(() => rocmSmiOpen({ path: "/nonexistent/librocm_smi64.so.9" }));
    expect([e.fn, e.statusName, e.status]).toEqual(["dlopen", "FAIL_LOAD_MODULE", 4]);
    expect(e.message).toContain("/nonexistent/librocm_smi64.so.9");
    expect(e.message).toContain("install librocm-smi64-1 or pass --rocm-smi-lib PATH / SVMRT_ROCM_SMI_LIB");
    expect(exitCodeOf(e)).toBe(EXIT.noDevice);
    // A library without the core entry points is not taken either.
    expect(smiError(() => rocmSmiOpen({ path: "libc.so.6" })).message).toContain("libc.so.6");
  });

  test("SVMRT_ROCM_SMI_LIB is respected, and never silently replaced by another candidate", () => {
    const bad = withEnv(ROCM_SMI_LIB_ENV, "/nonexistent/from-env.so", () => smiError(() => rocmSmiOpen()));
    expect(bad.statusName).toBe("FAIL_LOAD_MODULE");
    expect(bad.message).toContain("/nonexistent/from-env.so");
    expect(bad.message).not.toContain("librocm_smi64.so.1");
    using lib = withEnv(ROCM_SMI_LIB_ENV, DEBIAN_LIB, () => openReal());
    expect(lib.info.path).toBe(DEBIAN_LIB);
    // opts.path wins over the environment.
    using lib2 = withEnv(ROCM_SMI_LIB_ENV, "/nonexistent/from-env.so", () => openReal(DEBIAN_LIB));
    expect(lib2.info.path).toBe(DEBIAN_LIB);
  });

  test("after unload every call is an SmiError; unload is idempotent", () => {
    const lib = openReal(DEBIAN_LIB);
    lib.unload();
    lib.unload();
    expect(smiError(() => lib.init()).statusName).toBe("FAIL_LOAD_MODULE");
    expect(smiError(() => lib.gpuHandles()).message).toContain("unloaded");
    expect(smiError(() => lib.gpuTemperature(0n, "junction")).statusName).toBe("FAIL_LOAD_MODULE");
  });
});

describe("rocm-smi texts", () => {
  test("UUID text is amdsmi's (amdsmi_uuid_gen layout, function 0xff)", () => {
    expect(amdsmiUuidText(0x2efe9cea14a6b148n, 0x74a1)).toBe("2eff74a1-0000-1000-80fe-9cea14a6b148");
    expect(amdsmiUuidText(0n, 0x740f, 0)).toBe("0000740f-0000-1000-8000-000000000000");
  });

  test("BDF id layout of rsmi_dev_pci_id_get", () => {
    // domain 0x0001, bus 0xc1, device 0x1f, function 3
    expect(rsmiBdfText((1n << 32n) | (0xc1n << 8n) | (0x1fn << 3n) | 3n)).toBe("0001:c1:1f.3");
    expect(rsmiBdfText(0x0c00n)).toBe("0000:0c:00.0");
  });

  test("status names follow rsmi_status_t, not amdsmi's numbering", () => {
    expect(RSMI_STATUS.INIT_ERROR).toBe(8);
    expect(rsmiStatusName(8)).toBe("INIT_ERROR");
    expect(rsmiStatusName(17)).toBe("REFCOUNT_OVERFLOW");
    expect(rsmiStatusName(0xffffffff)).toBe("UNKNOWN_ERROR");
    expect(rsmiStatusName(-1)).toBe("UNKNOWN_ERROR");
    expect(rsmiStatusName(99)).toBe("STATUS_99");
  });
});
