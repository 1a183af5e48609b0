// The SC daemon's fastify app, assembled from plugins.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import { DaemonMetrics, envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics } from '@mallee/telemetry';
import { wire, wireErrorEnvelope } from '@mallee/wire';
import { scHandlers } from './handlers.js';
import { scMetrics } from './metrics.js';
import type { StorageController } from './storage-controller.js';

export interface ScServerDeps {
  logger: Logger;
  controller: StorageController;
  db: Db;
  /** The key the clc signs with, looked up per request (registration works without a restart). */
  keyFor: (from: string) => string | undefined;
}

export function buildServer(deps: ScServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(wireErrorEnvelope) });
  envelopeHandlers(app, wireErrorEnvelope);
  const metrics = scMetrics(new DaemonMetrics('sc'), deps.db);
  app.register(requestMetrics, { metrics });
  app.register(wire, { keyFor: deps.keyFor, handlers: scHandlers(deps.controller) });
  app.register(metricsEndpoint(metrics));
  app.get('/healthz', async () => ({ service: 'sc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
