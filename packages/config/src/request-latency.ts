// Request latency of a daemon's HTTP server as a Prometheus histogram (mallee_http_request_duration_seconds,
// by route and method), shared by every daemon's /metrics so the console can plot them side by side.
import type { FastifyInstance } from 'fastify';

// Any daemon's app, whatever its logger type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyApp = FastifyInstance<any, any, any, any, any>;

/** Upper bounds in seconds: from a fast in-memory answer to a slow cc round trip. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

interface Series {
  counts: number[];
  sum: number;
  count: number;
}

const label = (v: string) => v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));

export class RequestLatency {
  private readonly series = new Map<string, Series & { route: string; method: string }>();

  observe(route: string, method: string, seconds: number): void {
    const key = `${method} ${route}`;
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { route, method, counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** Prometheus text lines (cumulative buckets, +Inf, _sum, _count), HELP and TYPE included. */
  render(): string[] {
    const name = 'mallee_http_request_duration_seconds';
    const lines = [`# HELP ${name} Time from request to response, by route and method.`, `# TYPE ${name} histogram`];
    for (const s of this.series.values()) {
      const l = `route="${label(s.route)}",method="${s.method}"`;
      LATENCY_BUCKETS.forEach((le, i) => lines.push(`${name}_bucket{${l},le="${le}"} ${s.counts[i]}`));
      lines.push(`${name}_bucket{${l},le="+Inf"} ${s.count}`, `${name}_sum{${l}} ${s.sum}`, `${name}_count{${l}} ${s.count}`);
    }
    return lines;
  }

  /** Record every request of app (and its plugins); routes are their patterns, unmatched ones "(none)". */
  attach(app: AnyApp): this {
    app.addHook('onResponse', (req, reply, done) => {
      this.observe(req.routeOptions.url ?? '(none)', req.method, reply.elapsedTime / 1000);
      done();
    });
    return this;
  }
}
