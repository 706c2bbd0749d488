/**
 * One metric family on several registries (the agent's Prometheus-text and OpenMetrics
 * registries). prom-client renames a metric object shared between an OpenMetrics and a text
 * registry (`x_total` becomes `x` after the first OpenMetrics scrape), so each registry gets
 * its own object and every update goes to all of them.
 */
import { Counter, type CounterConfiguration, Gauge, type GaugeConfiguration, Histogram, type HistogramConfiguration, type LabelValues, type Registry } from "./prom-lib.ts";

type Labels = LabelValues<string>;

export class MultiGauge {
  private readonly gauges: Gauge[];
  constructor(registries: readonly Registry[], cfg: Omit<GaugeConfiguration<string>, "registers">) {
    this.gauges = registries.map((r) => new Gauge({ ...cfg, registers: [r] }));
  }
  set(labels: Labels, v: number): void {
    for (const g of this.gauges) g.set(labels, v);
  }
  remove(labels: Labels): void {
    for (const g of this.gauges) g.remove(labels);
  }
  reset(): void {
    for (const g of this.gauges) g.reset();
  }
}

export class MultiCounter {
  private readonly counters: Counter[];
  constructor(registries: readonly Registry[], cfg: Omit<CounterConfiguration<string>, "registers">) {
    this.counters = registries.map((r) => new Counter({ ...cfg, registers: [r] }));
  }
  inc(labels: Labels = {}, v = 1): void {
    for (const c of this.counters) c.inc(labels, v);
  }
  remove(labels: Labels): void {
    for (const c of this.counters) c.remove(labels);
  }
}

export class MultiHistogram {
  private readonly hs: Histogram[];
  constructor(registries: readonly Registry[], cfg: Omit<HistogramConfiguration<string>, "registers">) {
    this.hs = registries.map((r) => new Histogram({ ...cfg, registers: [r] }));
  }
  observe(labels: Labels, v: number): void {
    for (const h of this.hs) h.observe(labels, v);
  }
}

/**
 * A counter family whose value is a running total kept elsewhere (e.g. the session count's
 * inits in shared memory): each registry's counter is brought up to `total()` when scraped.
 */
export class TotalCounter {
  constructor(registries: readonly Registry[], cfg: Omit<CounterConfiguration<string>, "registers" | "collect" | "labelNames">, total: () => number) {
    for (const r of registries) {
      let seen = 0;
      new Counter({
        ...cfg,
        registers: [r],
        collect() {
          const t = total();
          if (t > seen) this.inc(t - seen);
          seen = Math.max(seen, t);
        },
      });
    }
  }
}
