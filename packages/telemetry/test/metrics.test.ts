// Request counts and latency histograms by protocol and action, gauges, and the request context.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { currentRequestId, DaemonMetrics, labelRequest, metricsEndpoint, requestMetrics, withRequestId } from '../src/index.js';

describe('DaemonMetrics', () => {
  it('counts and times requests by the action the protocol layer named, others by route', async () => {
    const metrics = new DaemonMetrics('test', { processMetrics: false });
    const app = Fastify();
    app.register(requestMetrics, { metrics });
    app.register(metricsEndpoint(metrics));
    app.post('/', async (req, reply) => {
      labelRequest(req, 'ec2', 'RunInstances');
      await new Promise((r) => setTimeout(r, 30));
      return reply.code(400).send('no');
    });
    app.get('/healthz', async () => 'ok');
    for (let i = 0; i < 3; i++) await app.inject({ method: 'POST', url: '/' });
    await app.inject({ method: 'GET', url: '/healthz' });
    await app.inject({ method: 'GET', url: '/no/such/path/12345' });
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.body;
    expect(text).toMatch(/^mallee_requests_total\{api="ec2",action="RunInstances",status="400"\} 3$/m);
    expect(text).toMatch(/^mallee_requests_total\{api="http",action="\/healthz",status="200"\} 1$/m);
    // Unmatched paths share one label: what a client sends never becomes a label value.
    expect(text).toMatch(/^mallee_requests_total\{api="http",action="\(unmatched\)",status="404"\} 1$/m);
    expect(text).not.toContain('12345');
    expect(text).toMatch(/^mallee_request_duration_seconds_bucket\{le="0\.01",api="ec2",action="RunInstances"\} 0$/m);
    expect(text).toMatch(/^mallee_request_duration_seconds_bucket\{le="0\.05",api="ec2",action="RunInstances"\} 3$/m);
    expect(text).toMatch(/^mallee_request_duration_seconds_count\{api="ec2",action="RunInstances"\} 3$/m);
    await app.close();
  });

  it('gauges are computed at each scrape; process metrics include the RSS', async () => {
    const metrics = new DaemonMetrics('test');
    let n = 1;
    metrics.gauge('mallee_test_things', 'Things by kind.', ['kind'], () => [[{ kind: 'a' }, n]]);
    expect(await metrics.text()).toMatch(/^mallee_test_things\{kind="a"\} 1$/m);
    n = 5;
    const text = await metrics.text();
    expect(text).toMatch(/^mallee_test_things\{kind="a"\} 5$/m);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
  });
});

describe('request context', () => {
  it('carries the id through awaits and timers started inside, and not outside', async () => {
    expect(currentRequestId()).toBeUndefined();
    const seen = await withRequestId('abc', async () => {
      await new Promise((r) => setTimeout(r, 5));
      return new Promise<string | undefined>((resolve) => setImmediate(() => resolve(currentRequestId())));
    });
    expect(seen).toBe('abc');
    expect(currentRequestId()).toBeUndefined();
  });
});
