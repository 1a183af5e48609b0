// Cloud admin: plots over the last hour of the daemons' /metrics (read by the clc every interval):
// request latency and rate per daemon, capacity use per zone and instance type, node cores and memory.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { consoleApi } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ErrorNote, PageHeader, useLoad } from '../components/ui.js';

interface Sample {
  t: number;
  latency: Record<string, { p50?: number; p95?: number; rate: number }>;
  capacity: Record<string, { available: number; max: number }>;
  nodes: Record<string, { coresUsed: number; coresMax: number; memoryUsedMiB: number; memoryMaxMiB: number }>;
  instances: Record<string, number>;
  down: string[];
}

type Series = { label: string; values: (number | null)[] };

const COLORS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7d8c', '#57606a'];

function Chart({ title, unit, times, series }: { title: string; unit: string; times: number[]; series: Series[] }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!el.current) return;
    const width = Math.max(320, el.current.clientWidth || 600);
    const plot = new uPlot(
      {
        width,
        height: 220,
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
        axes: [{}, { label: unit, size: 60 }],
        scales: { x: { time: true } },
      },
      [times.map((t) => t / 1000), ...series.map((s) => s.values)] as uPlot.AlignedData,
      el.current,
    );
    return () => plot.destroy();
  }, [times, series, unit]);
  const latest = series.map((s) => `${s.label}: ${s.values.at(-1) ?? '–'}`).join(', ');
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={el} role="img" aria-label={`${title}. Latest values: ${latest || 'none'}`} />
    </figure>
  );
}

const keysOf = (samples: Sample[], pick: (s: Sample) => Record<string, unknown>) => [...new Set(samples.flatMap((s) => Object.keys(pick(s))))].sort();
const round = (n: number | undefined, digits = 2) => (n === undefined ? null : Number(n.toFixed(digits)));

export function Metrics({ session }: PageProps) {
  const data = useLoad(() => consoleApi<{ intervalMs: number; samples: Sample[] }>(session, 'metrics'), [session], 10_000);
  const samples = data.data?.samples ?? [];
  const times = samples.map((s) => s.t);
  const daemons = keysOf(samples, (s) => s.latency);
  const caps = keysOf(samples, (s) => s.capacity);
  const nodes = keysOf(samples, (s) => s.nodes);
  const latest = samples.at(-1);
  return (
    <section>
      <PageHeader title="Metrics" />
      <p class="summary" role="status">
        {data.data ? `${samples.length} samples, one every ${data.data.intervalMs / 1000} s` : 'loading…'}
        {latest?.down.length ? ` · not answering: ${latest.down.join(', ')}` : ''}
      </p>
      <ErrorNote error={data.error} />
      {samples.length > 0 && (
        <div class="charts">
          <Chart title="Request latency, 95th percentile" unit="ms" times={times} series={daemons.map((d) => ({ label: d, values: samples.map((s) => round(s.latency[d]?.p95 !== undefined ? s.latency[d]!.p95! * 1000 : undefined, 1)) }))} />
          <Chart title="Request latency, median" unit="ms" times={times} series={daemons.map((d) => ({ label: d, values: samples.map((s) => round(s.latency[d]?.p50 !== undefined ? s.latency[d]!.p50! * 1000 : undefined, 1)) }))} />
          <Chart title="Requests per second" unit="req/s" times={times} series={daemons.map((d) => ({ label: d, values: samples.map((s) => round(s.latency[d]?.rate)) }))} />
          <Chart title="Capacity in use per zone and type" unit="%" times={times} series={caps.map((c) => ({ label: c, values: samples.map((s) => { const v = s.capacity[c]; return v && v.max ? round((100 * (v.max - v.available)) / v.max, 1) : null; }) }))} />
          <Chart title="Node cores in use" unit="cores" times={times} series={nodes.map((n) => ({ label: n, values: samples.map((s) => s.nodes[n]?.coresUsed ?? null) }))} />
          <Chart title="Node memory in use" unit="MiB" times={times} series={nodes.map((n) => ({ label: n, values: samples.map((s) => s.nodes[n]?.memoryUsedMiB ?? null) }))} />
        </div>
      )}
    </section>
  );
}
