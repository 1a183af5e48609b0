// The NC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { RequestLatency } from '@mallee/config';
import { wire } from '@mallee/wire';
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
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }) });
  const latency = new RequestLatency().attach(app);
  app.register(wire, { keyFor: deps.keyFor, handlers: ncHandlers(deps.node, () => deps.keyFor(NC_CALLER)) });
  app.register(ncMetrics(deps.node, latency));
  app.get('/healthz', async () => ({ service: 'nc', hypervisor: deps.node.hypervisorName, status: 'ok' }));
  return app as unknown as FastifyInstance;
}
