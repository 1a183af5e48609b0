// The CC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { DaemonMetrics, envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics } from '@mallee/telemetry';
import { wire, wireErrorEnvelope } from '@mallee/wire';
import type { Cluster } from './cluster.js';
import { ccHandlers, CC_CALLER } from './handlers.js';
import type { NetworkManager } from './net/manager.js';
import { ccMetrics } from './metrics.js';
import { ClusterVolumes } from './volumes.js';

export interface CcServerDeps {
  logger: Logger;
  cluster: Cluster;
  /** The key the clc signs with, looked up per request (a cluster registered after start works at once). */
  keyFor: (from: string) => string | undefined;
  network?: NetworkManager;
}

export function buildServer(deps: CcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(wireErrorEnvelope) });
  envelopeHandlers(app, wireErrorEnvelope);
  const metrics = ccMetrics(new DaemonMetrics('cc'), deps.cluster);
  app.register(requestMetrics, { metrics });
  app.register(wire, { keyFor: deps.keyFor, handlers: ccHandlers(deps.cluster, new ClusterVolumes(deps.cluster, () => deps.keyFor(CC_CALLER)), deps.network) });
  app.register(metricsEndpoint(metrics));
  app.get('/healthz', async () => ({ service: 'cc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
