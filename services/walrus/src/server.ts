// The Walrus daemon's fastify app, assembled from plugins: health, metrics, the clc link, then the S3
// REST endpoint (at /, under /services/Walrus, and on bucket.<domain> virtual hosts).
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { s3ErrorEnvelope, type CredentialLookup } from '@mallee/aws-protocol';
import { DaemonMetrics, envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics } from '@mallee/telemetry';
import { walrus, wire, type WirePluginOptions } from '@mallee/wire';
import type { ObjectStore } from './store/types.js';
import { METRICS_PATH, walrusMetrics } from './metrics.js';
import { s3Api } from './s3/plugin.js';
import type { ImageSource } from './s3/context.js';

export interface WalrusServerDeps {
  logger: Logger;
  store: ObjectStore;
  credentials: CredentialLookup;
  region: string;
  virtualHostDomains: readonly string[];
  maxObjectSize?: number;
  images?: ImageSource;
  /** The clc link (wire operations for sender "clc", at /_mallee/wire). */
  wire?: Pick<WirePluginOptions, 'keyFor' | 'handlers'>;
}

/** Bucket names cannot contain `_`, so nothing under /_mallee is an S3 path. */
export const HEALTH_PATH = '/_mallee/healthz';

export function buildServer(deps: WalrusServerDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Uploads of many GiB take as long as they take; idle sockets are still closed by keepAliveTimeout.
    requestTimeout: 0,
    // A URL the router cannot decode, a method S3 has not, unreadable HTTP: S3 errors, not fastify's JSON.
    ...envelopeServerOptions(s3ErrorEnvelope),
  });
  envelopeHandlers(app, s3ErrorEnvelope);
  const metrics = walrusMetrics(new DaemonMetrics('walrus'), deps.store, deps.images);
  app.register(requestMetrics, { metrics });
  app.get(HEALTH_PATH, async () => ({ service: 'walrus', status: 'ok' }));
  app.register(metricsEndpoint(metrics, METRICS_PATH));
  // In its own context: the wire body parser must not reach the S3 routes, which stream raw bodies.
  const link = deps.wire;
  if (link) app.register(async (scope) => scope.register(wire, { ...link, path: walrus.WALRUS_WIRE_PATH }));
  app.register(s3Api, {
    store: deps.store,
    credentials: deps.credentials,
    region: deps.region,
    virtualHostDomains: deps.virtualHostDomains,
    ...(deps.maxObjectSize !== undefined ? { maxObjectSize: deps.maxObjectSize } : {}),
    ...(deps.images ? { images: deps.images } : {}),
  });
  return app as unknown as FastifyInstance;
}
