/**
 * The agent in this process on the amdsmi C test double, in each of the double's layouts
 * (24, 25, 26): the pool's Workers load the double by path exactly as they load libamd_smi,
 * and share its state with the control surface the fixture opened here, so `configure()`
 * (the control's configLoad) sets what the agent reads. /metrics carries the double's GPUs
 * with DME labels taken from the double and the double's values; svmrt_info names amdsmi and
 * the library version; no /dev/kfd here, so the svm_* families stay at zero; a field made
 * NOT_SUPPORTED on one GPU leaves that GPU only; stop shuts the library down as often as it
 * was initialised.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { AMDSMI_DOUBLE_LAYOUTS, type AmdsmiDoubleLayout } from "../../runtime/ffi/amdsmi-double.ts";
import { promtoolCheckMetrics } from "../promtool.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS } from "../ffi/amdsmi-double.ts";
import { agentStart, scrape, seriesValue, waitFor, waitReady } from "./helpers.ts";

const MiB = 2 ** 20;
/** amdsmi_status_t NOT_SUPPORTED (reference/amdsmi.md). */
const STATUS_NOT_SUPPORTED = 2;
const VERSION: Record<AmdsmiDoubleLayout, string> = { 24: "24.6.3", 25: "25.2.0", 26: "26.5.0" };

/** Every sample line of the svm_* families: [name{labels}, value]. */
function svmSamples(text: string): [string, number][] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("svm_"))
    .map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]);
}

describe.each(AMDSMI_DOUBLE_LAYOUTS.map((l) => [l]))("agent on the amdsmi double, layout %p", (layout: AmdsmiDoubleLayout) => {
  const fx = amdsmiDoubleFixture(layout);
  afterAll(() => fx.close());

  test("/metrics: the double's GPUs, DME labels and values from it; promtool clean; svm_* at zero; stop shuts down", async () => {
    expect(existsSync("/dev/kfd")).toBe(false);
    fx.configure();
    const { agent, lines } = await agentStart({ backend: "amdsmi", amdsmiLib: fx.path, sampling: { policy: "fixed", evaluateMs: 100 } });
    try {
      await waitReady(agent);
      const text = await waitFor("power, temperature and VRAM of every GPU that has them", async () => {
        const t = (await scrape(agent)).text;
        const have = (name: string, gpu: number) => seriesValue(t, name, { gpu_id: String(gpu) }) !== undefined;
        return [0, 1].every((i) => have("gpu_package_power", i) && have("gpu_junction_temperature", i) && have("gpu_used_vram", i)) && have("gpu_used_vram", 2) ? t : undefined;
      });

      expect(seriesValue(text, "svmrt_info")).toBe(1);
      expect(seriesValue(text, "svmrt_info", { backend: "amdsmi", emulated: "false", library_version: VERSION[layout] })).toBe(1);
      expect(seriesValue(text, "gpu_nodes_total")).toBe(DOUBLE_GPUS.length);
      for (const [i, g] of DOUBLE_GPUS.entries()) {
        const labels = { gpu_id: String(i), gpu_uuid: g.uuid, serial_number: g.serial ?? "", card_model: g.model ?? "" };
        expect(seriesValue(text, "gpu_used_vram", labels)).toBe(g.vram_used! / MiB);
        expect(seriesValue(text, "gpu_total_vram", labels)).toBe(g.vram_total! / MiB);
        expect(seriesValue(text, "gpu_edge_temperature", labels)).toBe(g.temp_edge_c!);
      }
      const [g0, g1] = DOUBLE_GPUS;
      expect(seriesValue(text, "gpu_package_power", { gpu_uuid: g0!.uuid })).toBe(g0!.power_socket_w!);
      expect(seriesValue(text, "gpu_package_power", { gpu_uuid: g1!.uuid })).toBe(g1!.power_socket_w!);
      expect(seriesValue(text, "gpu_junction_temperature", { gpu_uuid: g0!.uuid })).toBe(g0!.temp_junction_c!);
      expect(seriesValue(text, "gpu_junction_temperature", { gpu_uuid: g1!.uuid })).toBe(g1!.temp_junction_c!);
      expect(seriesValue(text, "gpu_gfx_activity", { gpu_uuid: g1!.uuid })).toBe(g1!.gfx_activity!);
      // The third GPU has no power reading at all: no series for it, never a zero.
      expect(seriesValue(text, "gpu_package_power", { gpu_id: "2" })).toBeUndefined();
      expect(promtoolCheckMetrics(text)).toEqual({ code: 0, output: "" });

      // No /dev/kfd: the log says so and every svm_* sample stays at zero.
      expect(lines.some((l) => l.startsWith("SVM events unavailable: open /dev/kfd failed: ENOENT"))).toBe(true);
      expect(svmSamples(text).filter(([, v]) => v !== 0)).toEqual([]);
    } finally {
      await agent.stop();
    }
    expect(lines.at(-1)).toBe("stopped");
    expect(fx.ctl.counter("initialised")).toBe(0);
    expect(fx.ctl.counter("real_inits")).toBeGreaterThanOrEqual(1);
    expect(fx.ctl.counter("real_shutdowns")).toBe(fx.ctl.counter("real_inits"));
  }, 60_000);

  test("power NOT_SUPPORTED on GPU 1 through the control surface: only GPU 1's power series goes", async () => {
    fx.configure();
    const { agent } = await agentStart({ backend: "amdsmi", amdsmiLib: fx.path, sampling: { policy: "fixed", evaluateMs: 100 } });
    const [g0, g1] = DOUBLE_GPUS;
    try {
      await waitReady(agent);
      await waitFor("power of GPUs 0 and 1", async () => {
        const t = (await scrape(agent)).text;
        return seriesValue(t, "gpu_package_power", { gpu_id: "0" }) !== undefined && seriesValue(t, "gpu_package_power", { gpu_id: "1" }) !== undefined ? true : undefined;
      });
      fx.ctl.fail("amdsmi_get_power_info", 1, STATUS_NOT_SUPPORTED);
      const text = await waitFor("GPU 1's power to vanish", async () => {
        const t = (await scrape(agent)).text;
        return seriesValue(t, "gpu_package_power", { gpu_id: "1" }) === undefined ? t : undefined;
      });
      expect(seriesValue(text, "gpu_package_power", { gpu_uuid: g0!.uuid })).toBe(g0!.power_socket_w!);
      expect(seriesValue(text, "gpu_power_limit_watts", { gpu_id: "1" })).toBeUndefined();
      expect(seriesValue(text, "gpu_junction_temperature", { gpu_uuid: g1!.uuid })).toBe(g1!.temp_junction_c!);
      expect(seriesValue(text, "gpu_gfx_activity", { gpu_uuid: g1!.uuid })).toBe(g1!.gfx_activity!);
      expect(seriesValue(text, "gpu_health", { gpu_id: "1" })).toBe(1);
      expect(promtoolCheckMetrics(text)).toEqual({ code: 0, output: "" });
    } finally {
      await agent.stop();
    }
    expect(fx.ctl.counter("real_shutdowns")).toBe(fx.ctl.counter("real_inits"));
  }, 60_000);
});
