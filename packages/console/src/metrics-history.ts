// A short history of the cloud's metrics for the console's plots: every interval, read each daemon's
// Prometheus /metrics and keep what the admin pages draw (capacity use per zone, type and node;
// request latency p50/p95 and rate per daemon), newest last, in a fixed-size ring.
import { histogramQuantile, parsePrometheus, type PromSample } from './prometheus.js';

export interface ScrapeTarget {
  /** "clc", "walrus", "cc/<zone>", "nc/<node>". */
  key: string;
  /** Answers the daemon's Prometheus text, or throws. */
  read(): Promise<string>;
}

export interface LatencyPoint {
  /** Seconds; absent when no request was served during the interval. */
  p50?: number;
  p95?: number;
  /** Requests per second during the interval. */
  rate: number;
}

export interface MetricsSample {
  /** Milliseconds since the epoch. */
  t: number;
  /** Per daemon key: latency over the interval since the previous sample. */
  latency: Record<string, LatencyPoint>;
  /** "<zone>/<type>" → instances of that type the zone can still start, and could hold empty. */
  capacity: Record<string, { available: number; max: number }>;
  /** "nc/<node>" → cores and memory in use and offered. */
  nodes: Record<string, { coresUsed: number; coresMax: number; memoryUsedMiB: number; memoryMaxMiB: number }>;
  /** Instances by state (the clc's view). */
  instances: Record<string, number>;
  /** Daemons that did not answer this round. */
  down: string[];
}

const HIST = 'mallee_request_duration_seconds';

/** Cumulative request-latency buckets summed over every EC2/S3/wire action of one daemon (not /metrics, /healthz, the console's own routes). */
function latencyBuckets(samples: PromSample[]): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${HIST}_bucket` || s.labels.api === 'http') continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  return buckets;
}

function delta(now: Map<number, number>, before: Map<number, number> | undefined): Map<number, number> {
  const out = new Map<number, number>();
  for (const [le, c] of now) out.set(le, Math.max(0, c - (before?.get(le) ?? 0)));
  return out;
}

export class MetricsHistory {
  private readonly samples: MetricsSample[] = [];
  private readonly lastBuckets = new Map<string, { t: number; buckets: Map<number, number> }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly targets: () => Promise<ScrapeTarget[]>,
    private readonly opts: { intervalMs: number; keep: number },
  ) {}

  start(): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  list(sinceMs = 0): MetricsSample[] {
    return this.samples.filter((s) => s.t > sinceMs);
  }

  /** One round over every target (the timer calls it; tests call it directly). */
  sample(now = Date.now()): Promise<void> {
    this.running ??= this.round(now).finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(now: number): Promise<void> {
    const sample: MetricsSample = { t: now, latency: {}, capacity: {}, nodes: {}, instances: {}, down: [] };
    const nodeReadings: Record<string, Record<string, number>> = {};
    let targets: ScrapeTarget[] = [];
    try {
      targets = await this.targets();
    } catch {
      // the list of daemons is unavailable this round: record an empty sample
    }
    await Promise.all(
      targets.map(async (target) => {
        let parsed: PromSample[];
        try {
          parsed = parsePrometheus(await target.read());
        } catch {
          sample.down.push(target.key);
          return;
        }
        this.addLatency(sample, target.key, parsed, now);
        for (const s of parsed) {
          if (s.name === 'mallee_clc_capacity') {
            const k = `${s.labels.zone}/${s.labels.type}`;
            const c = (sample.capacity[k] ??= { available: 0, max: 0 });
            if (s.labels.kind === 'available') c.available = s.value;
            if (s.labels.kind === 'max') c.max = s.value;
          } else if (s.name === 'mallee_clc_instances') {
            sample.instances[s.labels.state!] = (sample.instances[s.labels.state!] ?? 0) + s.value;
          } else if (s.name === 'mallee_nc_capacity') {
            const n = (nodeReadings[target.key] ??= {});
            n[`${s.labels.resource}/${s.labels.kind}`] = s.value;
          }
        }
      }),
    );
    for (const [key, r] of Object.entries(nodeReadings)) {
      const used = (resource: string) => Math.max(0, (r[`${resource}/max`] ?? 0) - (r[`${resource}/available`] ?? 0));
      sample.nodes[key] = { coresUsed: used('cores'), coresMax: r['cores/max'] ?? 0, memoryUsedMiB: used('memory_mib'), memoryMaxMiB: r['memory_mib/max'] ?? 0 };
    }
    this.samples.push(sample);
    if (this.samples.length > this.opts.keep) this.samples.splice(0, this.samples.length - this.opts.keep);
  }

  private addLatency(sample: MetricsSample, key: string, parsed: PromSample[], now: number): void {
    const buckets = latencyBuckets(parsed);
    if (!buckets.size) return;
    const before = this.lastBuckets.get(key);
    this.lastBuckets.set(key, { t: now, buckets });
    if (!before) return;
    const d = delta(buckets, before.buckets);
    const count = d.get(Infinity) ?? 0;
    const seconds = Math.max((now - before.t) / 1000, 1e-3);
    const p50 = histogramQuantile(0.5, d);
    const p95 = histogramQuantile(0.95, d);
    sample.latency[key] = { rate: count / seconds, ...(p50 !== undefined ? { p50 } : {}), ...(p95 !== undefined ? { p95 } : {}) };
  }
}
