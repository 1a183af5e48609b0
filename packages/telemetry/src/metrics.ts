// Prometheus metrics every daemon serves the same way: requests and their latency by protocol and
// action (EC2 actions, S3 actions, wire operations), process facts (RSS, heap, event-loop lag), and
// whatever gauges the daemon adds. The protocol layers say which action a request was with
// labelRequest(); the requestMetrics plugin times every request from arrival to the last byte sent.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The protocol a request was served by; `http` for the daemon's own routes (/metrics, /healthz, unmatched). */
export type Api = 'ec2' | 's3' | 'wire' | 'http';

/** Upper bounds in seconds: from an in-memory answer to a slow cc round trip or a large upload. */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];

interface Label {
  api: Api;
  action: string;
  requestId?: string;
}

const labels = new WeakMap<object, Label>();

/**
 * Names the action a request is (call it once the action is known to be one the daemon serves: label
 * values must come from a fixed set, never from what a client sent, or a fuzzer grows the registry).
 */
export function labelRequest(req: FastifyRequest, api: Api, action: string, requestId?: string): void {
  labels.set(req.raw, requestId === undefined ? { api, action } : { api, action, requestId });
}

/** Reads (Describe*, ncDescribe*, Get*, List*, Head*) are polled all the time: their access lines are debug, the rest info. */
const READ = /^(nc)?(Describe|Get|List|Head|Lookup|Check)/;

export type LabelValues = Record<string, string | number>;

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'api' | 'action' | 'status'>;
  private readonly duration: Histogram<'api' | 'action'>;

  constructor(readonly daemon: string, opts: { processMetrics?: boolean } = {}) {
    this.requests = new Counter({
      name: 'mallee_requests_total',
      help: 'Requests served, by protocol (ec2, s3, wire, http), action and HTTP status.',
      labelNames: ['api', 'action', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'mallee_request_duration_seconds',
      help: 'Time from a request arriving to its last response byte, by protocol and action.',
      labelNames: ['api', 'action'],
      buckets: [...LATENCY_BUCKETS],
      registers: [this.registry],
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  observe(api: Api, action: string, status: number, seconds: number): void {
    this.requests.inc({ api, action, status });
    this.duration.observe({ api, action }, seconds);
  }

  /** A gauge computed when /metrics is read: collect() returns its current values by labels. */
  gauge(name: string, help: string, labelNames: readonly string[], collect: () => Iterable<[LabelValues, number]> | Promise<Iterable<[LabelValues, number]>>): void {
    new Gauge({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [l, v] of await collect()) this.set(l, v);
      },
    });
  }

  /** The Prometheus text exposition of everything registered. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
}

export interface RequestMetricsOptions {
  metrics: DaemonMetrics;
  /** One structured log line per protocol request (api, action, status, ms, requestId); default true. */
  accessLog?: boolean;
}

/**
 * Times every request of the app it is registered on (not encapsulated: it sees every route) and
 * writes the access log: one line per EC2/S3/wire request, with the request id it was served under.
 */
export const requestMetrics = fp<RequestMetricsOptions>(
  async (app: FastifyInstance, opts) => {
    app.addHook('onResponse', (req, reply, done) => {
      const l = labels.get(req.raw) ?? { api: 'http' as const, action: req.routeOptions.url ?? '(unmatched)' };
      const seconds = reply.elapsedTime / 1000;
      opts.metrics.observe(l.api, l.action, reply.statusCode, seconds);
      if (l.api !== 'http' && (opts.accessLog ?? true)) {
        const line = { api: l.api, action: l.action, status: reply.statusCode, ms: Math.round(seconds * 10_000) / 10, ...(l.requestId ? { requestId: l.requestId } : {}) };
        if (reply.statusCode >= 500) req.log.warn(line, 'request failed');
        else if (READ.test(l.action) && reply.statusCode < 400) req.log.debug(line, 'request served');
        else req.log.info(line, 'request served');
      }
      done();
    });
  },
  { name: 'mallee-request-metrics', fastify: '5.x' },
);

/**
 * GET `path` answers the registry in Prometheus text (walrus uses /_mallee/metrics: /metrics is a bucket there).
 * While `notReady()` says what the daemon is still doing, it answers 503 with that instead.
 */
export function metricsEndpoint(metrics: DaemonMetrics, path = '/metrics', notReady: () => string | undefined = () => undefined) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get(path, async (_req, reply) => {
      const step = notReady();
      if (step !== undefined) return reply.code(503).type('text/plain').send(`# the ${metrics.daemon} is starting: ${step}\n`);
      return reply.type(metrics.contentType).send(await metrics.text());
    });
  };
}
