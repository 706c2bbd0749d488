/**
 * prom-client's registry and metric classes, loaded from the package's own modules rather than
 * its index. The index also loads what the agent never uses: the Pushgateway (node:http,
 * node:https), the default process metrics, the cluster aggregator (node:cluster) and
 * OpenTelemetry's API (for exemplars of the global tracer). Those cost about 10 MB of resident
 * memory in every agent (measured: a Bun process importing the index grows by 19.5 MB, one
 * importing these four modules by 9 MB). The classes are the index's own objects
 * (test/agent/prom-lib.test.ts), typed by the package's declarations.
 */
import type * as PromClient from "prom-client";

// The package (pinned in package.json) has no exports map: its lib/ modules are reachable.
const Registry = require("prom-client/lib/registry.js") as typeof PromClient.Registry;
const Counter = require("prom-client/lib/counter.js") as typeof PromClient.Counter;
const Gauge = require("prom-client/lib/gauge.js") as typeof PromClient.Gauge;
const Histogram = require("prom-client/lib/histogram.js") as typeof PromClient.Histogram;
/** The OpenMetrics 1.0.0 content type (prom-client's `openMetricsContentType`). */
const openMetricsContentType = (Registry as unknown as { OPENMETRICS_CONTENT_TYPE: PromClient.OpenMetricsContentType }).OPENMETRICS_CONTENT_TYPE;

type Registry<T extends PromClient.RegistryContentType = PromClient.PrometheusContentType> = PromClient.Registry<T>;
type Counter<T extends string = string> = PromClient.Counter<T>;
type Gauge<T extends string = string> = PromClient.Gauge<T>;
type Histogram<T extends string = string> = PromClient.Histogram<T>;

export { Counter, Gauge, Histogram, openMetricsContentType, Registry };
export type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration, LabelValues, OpenMetricsContentType, RegistryContentType } from "prom-client";
