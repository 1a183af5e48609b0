// The clc's fastify app: the EC2 Query API, the wire endpoint (admin CLI, Walrus), metrics and health.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ec2Api, ec2ErrorEnvelope, type CredentialLookup, type Ec2Action } from '@mallee/aws-protocol';
import { envelopeHandlers, envelopeServerOptions, metricsEndpoint, requestMetrics, type DaemonMetrics } from '@mallee/telemetry';
import { wire, type WireHandler } from '@mallee/wire';

export interface ClcServerDeps {
  logger: Logger;
  actions: Ec2Action[];
  credentials: CredentialLookup;
  /** Keys of the wire senders ("admin", "walrus"), read per request. */
  keyFor: (from: string) => string | undefined;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  wireHandlers: WireHandler<any, any>[];
  /** GET /metrics (Prometheus text): request counts and latencies by action, and the clc's gauges. */
  metrics: DaemonMetrics;
}

export function buildServer(deps: ClcServerDeps): FastifyInstance {
  // What fastify answers itself (bad URLs, unserved paths, unreadable HTTP) comes in EC2's envelope too.
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(ec2ErrorEnvelope) });
  envelopeHandlers(app, ec2ErrorEnvelope);
  app.register(requestMetrics, { metrics: deps.metrics });
  app.register(ec2Api, { actions: deps.actions, credentials: deps.credentials });
  app.register(wire, { keyFor: deps.keyFor, handlers: deps.wireHandlers });
  app.register(metricsEndpoint(deps.metrics));
  app.get('/healthz', async () => ({ service: 'clc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
