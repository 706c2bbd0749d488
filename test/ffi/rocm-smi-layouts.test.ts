/**
 * The struct layouts of the rocm-smi binding (RSMI_LAYOUTS, RSMI_STRUCTS) against the compiler:
 * test/native/rocm_smi_probe.c prints sizeof/offsetof of the system's <rocm_smi/rocm_smi.h>
 * (Debian's librocm-smi-dev 5.2.3; CI installs it) and of the newest layout it declares; and
 * the rule that picks a family from what rsmi_version_get says. Without the header these tests
 * fail and say how to install it: they never skip silently.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { OUT_STRUCT_SLACK_bytes } from "../../runtime/ffi/amdsmi-layouts.ts";
import {
  RSMI_EVENT_DATA_MAX_bytes,
  RSMI_FAMILY_6_MARKER_SYMBOL,
  RSMI_LAYOUTS,
  RSMI_PCIE_BANDWIDTH_MAX_bytes,
  RSMI_STRUCTS,
  type RsmiLayoutFamily,
  type RsmiLayoutTable,
  rocmSmiLayoutDecision,
  rocmSmiOpen,
  rsmiLayoutDecide,
} from "../../runtime/ffi/rocm-smi.ts";
import { nativeBuild } from "../native/compile.ts";

const HEADER_PATH = "/usr/include/rocm_smi/rocm_smi.h";
const DEBIAN_LIB = "/usr/lib/librocm_smi64.so.1";

interface ProbeStruct {
  size: number;
  fields: Record<string, number>;
}
interface ProbeLayout {
  RSMI_MAX_NUM_FREQUENCIES: number;
  MAX_EVENT_NOTIFICATION_MSG_SIZE: number;
  structs: Record<string, ProbeStruct>;
}
interface Probe {
  header: ProbeLayout;
  newest: ProbeLayout;
}

/** Build and run the probe, or fail saying how to get the header. */
function probeRun(): Probe {
  if (!existsSync(HEADER_PATH)) {
    throw new Error(`${HEADER_PATH} is missing: install librocm-smi-dev (apt-get install librocm-smi-dev; CI does) to check the rocm-smi struct layouts`);
  }
  // The header is not part of compile.ts's cache key: its hash, passed as a definition, is.
  const headerHash = createHash("sha256").update(readFileSync(HEADER_PATH)).digest("hex").slice(0, 16);
  const exe = nativeBuild({ source: "rocm_smi_probe.c", shared: false, defines: [`ROCM_SMI_HEADER_SHA256_16=${headerHash}`] });
  const r = Bun.spawnSync([exe], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${exe} failed (exit ${r.exitCode}): ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Probe;
}

/** What the table says, in the probe's shape. */
function tableAsProbe(t: RsmiLayoutTable, eventSize_bytes: number): Record<string, ProbeStruct> {
  const f = t.frequencies;
  const p = t.pcieBandwidth;
  return {
    rsmi_frequencies_t: {
      size: f.size_bytes,
      fields: {
        ...(f.hasDeepSleep === undefined ? {} : { has_deep_sleep: f.hasDeepSleep }),
        num_supported: f.numSupported,
        current: f.current,
        frequency: f.frequency,
      },
    },
    rsmi_pcie_bandwidth_t: { size: p.size_bytes, fields: { num_supported: p.numSupported, current: p.current, frequency: p.frequency, lanes: p.lanes } },
    rsmi_evt_notification_data_t: { size: eventSize_bytes, fields: { dv_ind: t.event.dvInd, event: t.event.type, message: t.event.message } },
  };
}

describe("layout table against the compiler", () => {
  const probe = probeRun();

  test("the system header is family 5 or 6, and every struct matches that family's entry", () => {
    const h = probe.header;
    const family: RsmiLayoutFamily | undefined = h.RSMI_MAX_NUM_FREQUENCIES === 32 ? "5" : h.RSMI_MAX_NUM_FREQUENCIES === 33 ? "6" : undefined;
    expect(family).toBeDefined();
    const t = RSMI_LAYOUTS[family!];
    expect(t.frequenciesMax).toBe(h.RSMI_MAX_NUM_FREQUENCIES);
    const event = h.structs.rsmi_evt_notification_data_t!;
    expect(t.event.sizes_bytes).toContain(event.size);
    expect(h.MAX_EVENT_NOTIFICATION_MSG_SIZE).toBeLessThanOrEqual(t.event.messageMax_bytes);
    const want = tableAsProbe(t, event.size);
    // The header's rsmi_frequencies_t fields printed by the probe: num_supported, current, frequency.
    const freq = want.rsmi_frequencies_t!;
    delete freq.fields.has_deep_sleep;
    expect(h.structs.rsmi_frequencies_t).toEqual(freq);
    expect(h.structs.rsmi_pcie_bandwidth_t).toEqual(want.rsmi_pcie_bandwidth_t!);
    expect(event).toEqual(want.rsmi_evt_notification_data_t!);
  });

  test("Debian's 5.2.3 header is family 5: 264-byte frequencies, 392-byte PCIe bandwidth, 72-byte event", () => {
    const h = probe.header;
    expect(h.RSMI_MAX_NUM_FREQUENCIES).toBe(32);
    expect(h.MAX_EVENT_NOTIFICATION_MSG_SIZE).toBe(64);
    expect(h.structs.rsmi_frequencies_t!.size).toBe(264);
    expect(h.structs.rsmi_pcie_bandwidth_t!.size).toBe(392);
    expect(h.structs.rsmi_pcie_bandwidth_t!.fields.lanes).toBe(264);
    expect(h.structs.rsmi_evt_notification_data_t!.size).toBe(72);
  });

  test("rsmi_version_t and rsmi_error_count_t, the same in every family", () => {
    const v = RSMI_STRUCTS.version;
    expect(probe.header.structs.rsmi_version_t).toEqual({ size: v.size_bytes, fields: { major: v.major, minor: v.minor, patch: v.patch, build: v.build } });
    const e = RSMI_STRUCTS.errorCount;
    expect(probe.header.structs.rsmi_error_count_t).toEqual({ size: e.size_bytes, fields: { correctable_err: e.correctable, uncorrectable_err: e.uncorrectable } });
  });

  test("the newest layout (has_deep_sleep, 33 frequencies, 96-byte message) is family 6 with its largest event", () => {
    const n = probe.newest;
    const t = RSMI_LAYOUTS["6"];
    expect(t.frequenciesMax).toBe(n.RSMI_MAX_NUM_FREQUENCIES);
    expect(t.event.messageMax_bytes).toBe(n.MAX_EVENT_NOTIFICATION_MSG_SIZE);
    expect(n.structs).toEqual(tableAsProbe(t, Math.max(...t.event.sizes_bytes)));
    // The reviewer's numbers: 416 bytes with num_supported at 4 and current at 8; 104 per event.
    expect(n.structs.rsmi_pcie_bandwidth_t!.size).toBe(416);
    expect(n.structs.rsmi_evt_notification_data_t!.size).toBe(104);
  });
});

describe("out-struct sizes", () => {
  test("PCIe bandwidth and event buffers are sized for the largest family", () => {
    const families = Object.values(RSMI_LAYOUTS);
    expect(RSMI_PCIE_BANDWIDTH_MAX_bytes).toBe(Math.max(...families.map((t) => t.pcieBandwidth.size_bytes)));
    expect(RSMI_PCIE_BANDWIDTH_MAX_bytes).toBe(416);
    expect(RSMI_EVENT_DATA_MAX_bytes).toBe(Math.max(...families.flatMap((t) => t.event.sizes_bytes)));
    expect(RSMI_EVENT_DATA_MAX_bytes).toBe(104);
    // Every out-buffer also carries the slack amdsmi's do (the binding allocates size + slack).
    expect(OUT_STRUCT_SLACK_bytes).toBeGreaterThanOrEqual(RSMI_PCIE_BANDWIDTH_MAX_bytes);
  });

  test("every family's entry is self-consistent (arrays end where the next member starts)", () => {
    const align8 = (n: number): number => Math.ceil(n / 8) * 8;
    for (const t of Object.values(RSMI_LAYOUTS)) {
      expect(t.frequencies.frequency + 8 * t.frequenciesMax).toBe(t.frequencies.size_bytes);
      expect(t.pcieBandwidth.lanes).toBe(t.frequencies.size_bytes);
      expect(t.pcieBandwidth.size_bytes).toBe(align8(t.pcieBandwidth.lanes + 4 * t.frequenciesMax));
      expect([t.pcieBandwidth.numSupported, t.pcieBandwidth.current, t.pcieBandwidth.frequency]).toEqual([
        t.frequencies.numSupported,
        t.frequencies.current,
        t.frequencies.frequency,
      ]);
      expect(Math.max(...t.event.sizes_bytes)).toBe(t.event.message + t.event.messageMax_bytes);
    }
  });
});

describe("family from rsmi_version_get", () => {
  const v = (major: number, minor = 0, patch = 0) => ({ major, minor, patch });

  test("5.x (AMD's ROCm 5 packages) is family 5, whatever the marker says", () => {
    expect(rsmiLayoutDecide(v(5, 7, 1), false)).toEqual({ family: "5", why: "rsmi_version_get says 5.7.1: ROCm 5.x" });
    expect(rsmiLayoutDecide(v(5, 2, 3), true).family).toBe("5");
  });

  test("6.x (a ROCm 6.0 development build) and 7.x (ROCm 6.x releases) are family 6", () => {
    for (const version of [v(6), v(7), v(7, 3), v(7, 8, 2)]) {
      const d = rsmiLayoutDecide(version, false);
      expect(d.family).toBe("6");
      expect(d.why).toContain("ROCm 6.0 or later");
    }
  });

  test("a major above every known one takes the newest known family, saying so", () => {
    for (const version of [v(8), v(26, 1)]) {
      const d = rsmiLayoutDecide(version, false);
      expect(d.family).toBe("6");
      expect(d.why).toContain("newer than any known: read with the newest known layout");
    }
  });

  test(`0.x-4.x name no release: ${RSMI_FAMILY_6_MARKER_SYMBOL} tells 6 from 5`, () => {
    // Debian/Ubuntu packages built without tags say 1.0.0 (family 5); so does ROCm 7.2's library (family 6).
    expect(rsmiLayoutDecide(v(1), false)).toEqual({
      family: "5",
      why: "rsmi_version_get says 1.0.0, which names no release (a build without release tags); the library lacks rsmi_dev_power_get (before ROCm 6.0)",
    });
    expect(rsmiLayoutDecide(v(1), true).family).toBe("6");
    expect(rsmiLayoutDecide(v(2, 1), true).family).toBe("6");
    expect(rsmiLayoutDecide(v(0, 9), false).family).toBe("5");
    expect(rsmiLayoutDecide(v(4, 5), false).family).toBe("5");
  });

  test("no version: no family, and the reason says why", () => {
    expect(rsmiLayoutDecide(undefined, true)).toEqual({
      family: undefined,
      why: "rsmi_version_get failed, so the struct layout of this librocm_smi64 cannot be told",
    });
  });

  test("Debian's real librocm_smi64 (1.0.0, no rsmi_dev_power_get) is read as family 5", () => {
    if (!existsSync(DEBIAN_LIB)) throw new Error(`${DEBIAN_LIB} is missing: install librocm-smi64-1 (apt-get install librocm-smi64-1; CI does)`);
    using lib = rocmSmiOpen({ path: DEBIAN_LIB });
    expect(lib.info.version).toBe("1.0.0");
    expect(rocmSmiLayoutDecision(lib)).toEqual(rsmiLayoutDecide(v(1), false));
  });
});
