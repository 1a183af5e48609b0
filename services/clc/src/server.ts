// The clc's fastify app: the EC2 Query API, the wire endpoint (admin CLI, Walrus), the web console and health.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { consolePlugin, type ConsoleOptions } from '@mallee/console';
import { ec2Api, type CredentialLookup, type Ec2Action } from '@mallee/aws-protocol';
import type { RequestLatency } from '@mallee/config';
import { wire, type WireHandler } from '@mallee/wire';

export interface ClcServerDeps {
  logger: Logger;
  actions: Ec2Action[];
  credentials: CredentialLookup;
  /** Keys of the wire senders ("admin", "walrus"), read per request. */
  keyFor: (from: string) => string | undefined;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  wireHandlers: WireHandler<any, any>[];
  /** GET /metrics (Prometheus text). */
  metrics: (app: FastifyInstance) => Promise<void>;
  /** Records every request's latency (rendered by the metrics plugin). */
  latency: RequestLatency;
  /** The web console at /console/ (and S3 proxied to Walrus at /services/Walrus). */
  console?: ConsoleOptions;
}

export function buildServer(deps: ClcServerDeps): FastifyInstance {
  const app = Fastify({ loggerInstance: deps.logger, logController: new LogController({ disableRequestLogging: true }) });
  deps.latency.attach(app);
  app.register(ec2Api, { actions: deps.actions, credentials: deps.credentials });
  app.register(wire, { keyFor: deps.keyFor, handlers: deps.wireHandlers });
  app.register(deps.metrics);
  if (deps.console) app.register(consolePlugin, deps.console);
  app.get('/healthz', async () => ({ service: 'clc', status: 'ok' }));
  return app as unknown as FastifyInstance;
}
