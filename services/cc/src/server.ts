// The CC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { RequestLatency } from '@mallee/config';
import { wire } from '@mallee/wire';
import type { Cluster } from './cluster.js';
import { ccHandlers, CC_CALLER } from './handlers.js';
import { ccMetrics } from './metrics.js';
import { ClusterVolumes } from './volumes.js';

export interface CcServerDeps {
  logger: Logger;
  cluster: Cluster;
  /** The key the clc signs with, looked up per request (a cluster registered after start works at once). */
  keyFor: (from: string) => string | undefined;
}

export function buildServer(deps: CcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }) });
  const latency = new RequestLatency().attach(app);
  app.register(wire, { keyFor: deps.keyFor, handlers: ccHandlers(deps.cluster, new ClusterVolumes(deps.cluster, () => deps.keyFor(CC_CALLER))) });
  app.register(ccMetrics(deps.cluster, latency));
  app.get('/healthz', async () => ({ service: 'cc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
