// @mallee/console: the web console (a Preact single-page app built by Vite into dist/ui) and the
// fastify plugin the clc mounts to serve it, proxy S3 to Walrus on the same origin and answer the
// few admin reads that are not EC2 actions (services, metrics history).
export { consolePlugin, CONSOLE_PREFIX, type ConsoleOptions } from './plugin.js';
export { MetricsHistory, type MetricsSample, type ScrapeTarget } from './metrics-history.js';
export { parsePrometheus, histogramQuantile, type PromSample } from './prometheus.js';
