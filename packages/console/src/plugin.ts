// The console as one fastify plugin for the clc: the built single-page app at /console/, S3 at
// /services/Walrus proxied to Walrus (same origin, so the browser's SigV4-signed requests need no
// CORS and verify unchanged: the Host header and path are passed through), and /console/api/*:
// JSON reads signed with the user's own keys exactly like an EC2 request (whoami, and for the cloud
// admin: every component's state and the metrics history).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';
import replyFrom from '@fastify/reply-from';
import { Ec2Error, verifySigV4, type CredentialLookup, type Principal } from '@mallee/aws-protocol';
import type { admin } from '@mallee/wire';
import type { z } from 'zod';
import { MetricsHistory, type ScrapeTarget } from './metrics-history.js';

export const CONSOLE_PREFIX = '/console/';
const WALRUS_PREFIX = '/services/Walrus';

type ServiceStatus = z.infer<typeof admin.serviceStatus>;

export interface ConsoleOptions {
  credentials: CredentialLookup;
  region: string;
  /** Walrus's base URL, asked per request (it may register or move after the clc starts); undefined: S3 answers 503. */
  walrusUrl: () => string | undefined;
  /** Every component and its state (the admin DescribeServices). */
  describeServices: () => Promise<ServiceStatus[]>;
  /** How often the metrics history reads every daemon's /metrics, and how many rounds it keeps. Default 10 s × 360 (an hour). */
  metrics?: { intervalMs?: number; keep?: number };
  /** The built app (default: this package's dist/ui). */
  uiDir?: string;
}

const defaultUiDir = () => fileURLToPath(new URL('../ui/', import.meta.url));

/** Where each kind of daemon serves Prometheus text (Walrus keeps /metrics free for a bucket of that name). */
const metricsPath = (type: string) => (type === 'walrus' ? '/_mallee/metrics' : '/metrics');

async function readText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.text();
}

function s3Unavailable(reply: FastifyReply, message: string) {
  return reply
    .code(503)
    .type('application/xml')
    .send(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code><Message>${message}</Message></Error>`);
}

export async function consolePlugin(app: FastifyInstance, opts: ConsoleOptions): Promise<void> {
  const uiDir = opts.uiDir ?? defaultUiDir();

  // --- the app
  app.get('/console', (_req, reply) => reply.redirect(CONSOLE_PREFIX));
  if (existsSync(uiDir)) {
    await app.register(fastifyStatic, { root: uiDir, prefix: CONSOLE_PREFIX, decorateReply: false, maxAge: '1h', immutable: false, wildcard: true, index: 'index.html' });
  } else {
    app.get(`${CONSOLE_PREFIX}*`, (_req, reply) => reply.code(503).type('text/plain').send(`The console is not built (${uiDir} is missing): run npm run build.\n`));
  }

  // --- S3, same origin
  await app.register(async (s3) => {
    s3.removeAllContentTypeParsers();
    // Bodies are streamed to Walrus untouched (uploads of any size, signed payload hashes intact).
    s3.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    await s3.register(replyFrom, { disableRequestLogging: true, undici: { headersTimeout: 600_000, bodyTimeout: 600_000 } });
    const forward = (req: FastifyRequest, reply: FastifyReply) => {
      const base = opts.walrusUrl();
      if (!base) return s3Unavailable(reply, 'No Walrus is registered with this cloud.');
      return reply.from(base.replace(/\/$/, '') + req.url, {
        // The signature covers Host: keep the one the client signed.
        // Expect: 100-continue was answered by this server already (and clients never sign it).
        rewriteRequestHeaders: (orig, { expect: _expect, ...headers }) => ({ ...headers, host: orig.headers.host ?? headers.host }),
        retryDelay: () => null,
        onError: (r) => s3Unavailable(r as FastifyReply, `Walrus at ${base} does not answer.`),
      });
    };
    s3.all(WALRUS_PREFIX, forward);
    s3.all(`${WALRUS_PREFIX}/*`, forward);
  });

  // --- signed JSON reads
  const history = new MetricsHistory(async () => scrapeTargets(app, opts), { intervalMs: opts.metrics?.intervalMs ?? 10_000, keep: opts.metrics?.keep ?? 360 });
  app.addHook('onReady', async () => history.start());
  app.addHook('onClose', async () => history.stop());

  const authenticate = async (req: FastifyRequest): Promise<Principal> => {
    const [path, query = ''] = req.url.split(/\?(.*)/s, 2) as [string, string?];
    const v = await verifySigV4({ method: req.method, path, query, headers: req.headers, body: '' }, { credentials: opts.credentials, services: ['ec2'] });
    return v.principal;
  };
  const signed = (needAdmin: boolean, fn: (req: FastifyRequest, p: Principal) => unknown) => async (req: FastifyRequest, reply: FastifyReply) => {
    try {
      const p = await authenticate(req);
      if (needAdmin && !p.isAdmin) throw new Ec2Error('UnauthorizedOperation', 'You are not authorized to perform this operation: it needs the cloud administrator (account eucalyptus).', 403);
      return await fn(req, p);
    } catch (err) {
      if (!(err instanceof Ec2Error)) throw err;
      return reply.code(err.status).send({ code: err.code, message: err.message });
    }
  };
  app.get('/console/api/info', async () => ({ region: opts.region, s3: opts.walrusUrl() !== undefined }));
  app.get('/console/api/whoami', signed(false, (_req, p) => ({ accountId: p.accountId, accountName: p.accountName, userId: p.userId, isAdmin: p.isAdmin })));
  app.get('/console/api/services', signed(true, async () => ({ services: await servicesWithWalrus(opts) })));
  app.get('/console/api/metrics', signed(true, (req) => {
    const since = Number((req.query as { since?: string }).since ?? 0);
    return { intervalMs: opts.metrics?.intervalMs ?? 10_000, samples: history.list(Number.isFinite(since) ? since : 0) };
  }));
}

/**
 * DescribeServices, plus the Walrus this clc proxies to when DescribeServices does not list one
 * (Walrus does not register with the clc yet): its state is whether its health check answers.
 */
async function servicesWithWalrus(opts: ConsoleOptions): Promise<ServiceStatus[]> {
  const services = await opts.describeServices();
  const url = opts.walrusUrl();
  if (!url || services.some((s) => s.type === 'walrus')) return services;
  const now = new Date().toISOString();
  try {
    await readText(new URL('/_mallee/healthz', url).href);
    return [...services, { type: 'walrus', name: 'walrus', partition: opts.region, url, state: 'ENABLED', lastContact: now }];
  } catch (err) {
    return [...services, { type: 'walrus', name: 'walrus', partition: opts.region, url, state: 'NOTREADY', detail: `health check failed: ${(err as Error).message}` }];
  }
}

/** The clc itself (in-process), Walrus, and every cc and nc DescribeServices names. */
async function scrapeTargets(app: FastifyInstance, opts: ConsoleOptions): Promise<ScrapeTarget[]> {
  const targets: ScrapeTarget[] = [
    {
      key: 'clc',
      read: async () => {
        const res = await app.inject({ method: 'GET', url: '/metrics' });
        if (res.statusCode !== 200) throw new Error(`clc /metrics: HTTP ${res.statusCode}`);
        return res.body;
      },
    },
  ];
  const walrus = opts.walrusUrl();
  if (walrus) targets.push({ key: 'walrus', read: () => readText(new URL(metricsPath('walrus'), walrus).href) });
  for (const s of await opts.describeServices()) {
    if (s.type === 'clc' || s.type === 'walrus' || s.state !== 'ENABLED') continue;
    targets.push({ key: `${s.type}/${s.name}`, read: () => readText(new URL(metricsPath(s.type), s.url).href) });
  }
  return targets;
}
