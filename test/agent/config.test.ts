/** The agent configuration: every refusal names file:line:col and the field. */
import { describe, expect, test } from "bun:test";
import { agentConfigParse } from "../../runtime/agent/config.ts";
import { ConfigError } from "../../runtime/errors.ts";

function refusal(text: string): string {
  try {
    agentConfigParse("/etc/svmrt/agent.yaml", text);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("accepted");
}

describe("agent configuration", () => {
  test("an extra label may not take a name the agent sets itself", () => {
    expect(refusal("metrics:\n  labels: { cluster: a, gpu_id: x }\n")).toBe(
      "/etc/svmrt/agent.yaml:2:25: metrics.labels.gpu_id: a label name the agent does not set itself (not gpu_id, gpu_uuid, serial_number, card_model, hostname, gpu_partition_id, gpu_compute_partition_type, gpu_memory_partition_type, deployment_mode, kfd_gpu_id, pid, outcome, access, direction, trigger, event, pair, le, quantile)",
    );
    expect(refusal("metrics: { labels: { trigger: x } }\n")).toContain("metrics.labels.trigger: a label name the agent does not set itself");
    expect(agentConfigParse("a.yaml", "metrics: { labels: { cluster: edge-a } }\n").metrics.labels).toEqual({ cluster: "edge-a" });
  });

  test("metrics.fields names GPU families only", () => {
    expect(refusal("metrics: { fields: [gpu_gfx_activity, gpu_gfx_actvity] }\n")).toStartWith(
      "/etc/svmrt/agent.yaml:1:39: metrics.fields[1]: a GPU metric family (gpu_edge_temperature,",
    );
    expect(agentConfigParse("a.yaml", "metrics: { fields: [gpu_gfx_activity] }\n").metrics.fields).toEqual(["gpu_gfx_activity"]);
  });

  test("plugin_roots are relative to the file", () => {
    expect(agentConfigParse("/etc/svmrt/agent.yaml", "plugin_roots: [plugins, /opt/p]\n").pluginRoots).toEqual(["/etc/svmrt/plugins", "/opt/p"]);
    expect(refusal("plugin_roots: plugins\n")).toBe("/etc/svmrt/agent.yaml:1:15: plugin_roots: a list");
  });
});
