// The NC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { DaemonMetrics, envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics } from '@mallee/telemetry';
import { wire, wireErrorEnvelope } from '@mallee/wire';
import type { NodeController } from './node-controller.js';
import { ncHandlers, NC_CALLER } from './handlers.js';
import { ncMetrics } from './metrics.js';

export interface NcServerDeps {
  logger: Logger;
  node: NodeController;
  /** The key the cc signs with, looked up per request (a node registered after start works at once). */
  keyFor: (from: string) => string | undefined;
}

export function buildServer(deps: NcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(wireErrorEnvelope) });
  envelopeHandlers(app, wireErrorEnvelope);
  const metrics = ncMetrics(new DaemonMetrics('nc'), deps.node);
  app.register(requestMetrics, { metrics });
  app.register(wire, { keyFor: deps.keyFor, handlers: ncHandlers(deps.node, () => deps.keyFor(NC_CALLER)) });
  app.register(metricsEndpoint(metrics));
  app.get('/healthz', async () => ({ service: 'nc', hypervisor: deps.node.hypervisorName, status: 'ok' }));
  return app as unknown as FastifyInstance;
}
