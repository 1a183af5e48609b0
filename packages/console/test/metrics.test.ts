import { describe, expect, it } from 'vitest';
import { DaemonMetrics } from '@mallee/telemetry';
import { MetricsHistory } from '../src/metrics-history.js';
import { histogramQuantile, parsePrometheus } from '../src/prometheus.js';

describe('metrics for the console plots', () => {
  it('parses Prometheus text with labels, escapes and +Inf', () => {
    const s = parsePrometheus('# HELP x y\nmallee_a{zone="z\\"1",kind="max"} 4\nmallee_b 2.5\nh_bucket{le="+Inf"} 3\n');
    expect(s).toEqual([
      { name: 'mallee_a', labels: { zone: 'z"1', kind: 'max' }, value: 4 },
      { name: 'mallee_b', labels: {}, value: 2.5 },
      { name: 'h_bucket', labels: { le: '+Inf' }, value: 3 },
    ]);
  });

  it('a quantile interpolates inside its bucket, and is undefined without observations', () => {
    const b = new Map([[0.1, 50], [0.2, 100], [Infinity, 100]]);
    expect(histogramQuantile(0.5, b)).toBeCloseTo(0.1);
    expect(histogramQuantile(0.75, b)).toBeCloseTo(0.15);
    expect(histogramQuantile(0.5, new Map([[Infinity, 0]]))).toBeUndefined();
  });

  it('the history turns two readings of a daemon into latency over the interval, and reads capacity', async () => {
    const latency = new DaemonMetrics('clc', { processMetrics: false });
    const texts = async () => [await latency.text(), 'mallee_clc_capacity{zone="z",type="t1.micro",kind="available"} 3', 'mallee_clc_capacity{zone="z",type="t1.micro",kind="max"} 4'].join('\n');
    let up = true;
    const h = new MetricsHistory(async () => [{ key: 'clc', read: () => texts() }, { key: 'nc/n1', read: async () => { if (!up) throw new Error('down'); return 'mallee_nc_capacity{resource="cores",kind="max"} 8\nmallee_nc_capacity{resource="cores",kind="available"} 6'; } }], { intervalMs: 1000, keep: 2 });
    latency.observe('ec2', 'DescribeInstances', 200, 0.002);
    latency.observe('http', '/metrics', 200, 9);
    await h.sample(1000);
    for (let i = 0; i < 10; i++) latency.observe('ec2', 'RunInstances', 200, 0.04);
    latency.observe('http', '/metrics', 200, 9);
    up = false;
    await h.sample(3000);
    const [first, second] = h.list();
    expect(first!.latency.clc).toBeUndefined();
    expect(second!.latency.clc!.rate).toBeCloseTo(5);
    expect(second!.latency.clc!.p50).toBeGreaterThan(0.025);
    expect(second!.latency.clc!.p50).toBeLessThanOrEqual(0.05);
    expect(second!.capacity['z/t1.micro']).toEqual({ available: 3, max: 4 });
    expect(first!.nodes['nc/n1']).toEqual({ coresUsed: 2, coresMax: 8, memoryUsedMiB: 0, memoryMaxMiB: 0 });
    expect(second!.down).toEqual(['nc/n1']);
    await h.sample(4000);
    expect(h.list().map((s) => s.t)).toEqual([3000, 4000]);
  });
});
