// The Walrus daemon's fastify app, assembled from plugins: health, then the S3 REST endpoint
// (at /, under /services/Walrus, and on bucket.<domain> virtual hosts).
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import { S3Error, s3ErrorXml, type CredentialLookup } from '@mallee/aws-protocol';
import { walrus, wire, type WirePluginOptions } from '@mallee/wire';
import { RequestLatency } from '@mallee/config';
import type { ObjectStore } from './store/types.js';
import { S3Metrics, walrusMetrics } from './metrics.js';
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
    // A URL the router cannot decode still gets an S3 error, not fastify's JSON.
    frameworkErrors: (error, _req, reply) => {
      const err = error.code === 'FST_ERR_BAD_URL' ? new S3Error('InvalidURI', "Couldn't parse the specified URI.") : new S3Error('InvalidRequest', error.message);
      const requestId = randomBytes(8).toString('hex').toUpperCase();
      void (reply as FastifyReply).code(err.status).header('x-amz-request-id', requestId).type('application/xml').send(s3ErrorXml(err, '', requestId));
    },
  });
  const metrics = new S3Metrics(new RequestLatency().attach(app));
  app.get(HEALTH_PATH, async () => ({ service: 'walrus', status: 'ok' }));
  app.register(walrusMetrics(metrics, deps.store));
  // In its own context: the wire body parser must not reach the S3 routes, which stream raw bodies.
  const link = deps.wire;
  if (link) app.register(async (scope) => scope.register(wire, { ...link, path: walrus.WALRUS_WIRE_PATH }));
  app.register(s3Api, {
    onServed: (action, status) => metrics.record(action, status),
    store: deps.store,
    credentials: deps.credentials,
    region: deps.region,
    virtualHostDomains: deps.virtualHostDomains,
    ...(deps.maxObjectSize !== undefined ? { maxObjectSize: deps.maxObjectSize } : {}),
    ...(deps.images ? { images: deps.images } : {}),
  });
  return app as unknown as FastifyInstance;
}
