// The NC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { DaemonMetrics, envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics } from '@mallee/telemetry';
import { WireError, wire, wireErrorEnvelope } from '@mallee/wire';
import type { NodeController } from './node-controller.js';
import { ncHandlers, NC_CALLER } from './handlers.js';
import { ncMetrics } from './metrics.js';

export interface NcServerDeps {
  logger: Logger;
  node: NodeController;
  /** The key the cc signs with, looked up per request (a node registered after start works at once). */
  keyFor: (from: string) => string | undefined;
  /** What the NC is still doing before it can serve (undefined once ready): wire operations are refused meanwhile. */
  starting?: () => string | undefined;
}

export function buildServer(deps: NcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(wireErrorEnvelope) });
  envelopeHandlers(app, wireErrorEnvelope);
  const metrics = ncMetrics(new DaemonMetrics('nc'), deps.node);
  app.register(requestMetrics, { metrics });
  const starting = deps.starting ?? (() => undefined);
  const gate = () => {
    const step = starting();
    if (step !== undefined) throw new WireError('NodeStarting', `the node controller is starting: ${step}`, 503);
  };
  const handlers = ncHandlers(deps.node, () => deps.keyFor(NC_CALLER)).map((h) => ({ ...h, handle: (req: unknown, ctx: Parameters<typeof h.handle>[1]) => (gate(), h.handle(req, ctx)) }));
  app.register(wire, { keyFor: deps.keyFor, handlers });
  app.register(metricsEndpoint(metrics, '/metrics', starting));
  app.get('/healthz', async () => {
    const step = starting();
    return { service: 'nc', hypervisor: deps.node.hypervisorName, status: step === undefined ? 'ok' : 'starting', ...(step !== undefined ? { step } : {}) };
  });
  return app as unknown as FastifyInstance;
}
