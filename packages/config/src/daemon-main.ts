// The command-line entry every daemon shares: `--home DIR --conf FILE` (plus the daemon's own flags),
// validated config, a pino logger, and a clean stop on SIGTERM/SIGINT.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino, type Logger } from 'pino';
import { requestIdMixin } from '@mallee/telemetry';
import { loadConfig, type MalleeConfig } from './index.js';

export interface DaemonMainContext {
  config: MalleeConfig;
  logger: Logger;
  /** Values of the daemon's own extra flags. */
  args: Record<string, string | boolean | undefined>;
}

export async function runDaemonMain(opts: {
  /** Logger name, e.g. "cc". */
  name: string;
  /** For log lines, e.g. "cluster controller". */
  title: string;
  extraOptions?: NonNullable<ParseArgsConfig['options']>;
  start: (ctx: DaemonMainContext) => Promise<{ close(): Promise<void> }>;
}): Promise<void> {
  const { values } = parseArgs({ options: { home: { type: 'string' }, conf: { type: 'string' }, ...opts.extraOptions } });
  const home = typeof values.home === 'string' ? values.home : undefined;
  const conf = typeof values.conf === 'string' ? values.conf : undefined;
  const config = loadConfig({ ...(conf ? { file: conf } : {}), overrides: home ? { MALLEE_HOME: home } : {} });
  // Lines written while serving a request (and what it started) carry its requestId.
  const logger = pino({ name: opts.name, level: config.LOG_LEVEL, mixin: requestIdMixin });
  try {
    const daemon = await opts.start({ config, logger, args: values as DaemonMainContext['args'] });
    const stop = (signal: string) => {
      logger.info({ signal }, `${opts.title} stopping`);
      daemon.close().then(() => process.exit(0), (err: unknown) => {
        logger.error({ err }, 'unclean shutdown');
        process.exit(1);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  } catch (err) {
    logger.fatal({ err }, `${opts.title} failed to start`);
    process.exit(1);
  }
}
