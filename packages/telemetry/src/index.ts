// What every daemon's HTTP server shares: Prometheus metrics by action, the request id carried across
// daemons, and protocol envelopes for the errors fastify answers itself.
export * from './metrics.js';
export * from './context.js';
export * from './http-errors.js';
