// The CC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { wire } from '@mallee/wire';
import type { Cluster } from './cluster.js';
import { ccHandlers } from './handlers.js';
import type { NetworkManager } from './net/manager.js';
import { ccMetrics } from './metrics.js';

export interface CcServerDeps {
  logger: Logger;
  cluster: Cluster;
  /** The key the clc signs with, looked up per request (a cluster registered after start works at once). */
  keyFor: (from: string) => string | undefined;
  network?: NetworkManager;
}

export function buildServer(deps: CcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }) });
  app.register(wire, { keyFor: deps.keyFor, handlers: ccHandlers(deps.cluster, deps.network) });
  app.register(ccMetrics(deps.cluster));
  app.get('/healthz', async () => ({ service: 'cc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
