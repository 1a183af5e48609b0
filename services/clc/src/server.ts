// The clc's fastify app: the EC2 Query API, the wire endpoint (admin CLI, Walrus), the web console, metrics and health.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { consolePlugin, type ConsoleOptions } from '@mallee/console';
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
  /** The web console at /console/ (and S3 proxied to Walrus at /services/Walrus). */
  console?: ConsoleOptions;
}

export function buildServer(deps: ClcServerDeps): FastifyInstance {
  // What fastify answers itself (bad URLs, unserved paths, unreadable HTTP) comes in EC2's envelope too.
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }), ...envelopeServerOptions(ec2ErrorEnvelope) });
  envelopeHandlers(app, ec2ErrorEnvelope);
  app.register(requestMetrics, { metrics: deps.metrics });
  app.register(ec2Api, { actions: deps.actions, credentials: deps.credentials });
  app.register(wire, { keyFor: deps.keyFor, handlers: deps.wireHandlers });
  app.register(metricsEndpoint(deps.metrics));
  if (deps.console) app.register(consolePlugin, deps.console);
  app.get('/healthz', async () => ({ service: 'clc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
