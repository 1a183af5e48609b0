#!/usr/bin/env node
// `node services/walrus/dist/src/main.js [--home DIR] [--conf FILE] [--port N]`: run Walrus until SIGTERM/SIGINT.
// MALLEE_WALRUS_CREDENTIALS=FILE (JSON {accessKeyId: {secretAccessKey, accountId, accountName, isAdmin}})
// replaces the clc lookup, for running Walrus alone.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '@mallee/config';
import { startDaemon } from './daemon.js';
import { staticCredentials } from './static-credentials.js';

const { values } = parseArgs({ options: { home: { type: 'string' }, conf: { type: 'string' }, port: { type: 'string' } } });
const config = loadConfig({ ...(values.conf ? { file: values.conf } : {}), overrides: values.home ? { MALLEE_HOME: values.home } : {} });
const logger = pino({ name: 'walrus', level: config.LOG_LEVEL });
try {
  const credFile = process.env.MALLEE_WALRUS_CREDENTIALS;
  const daemon = await startDaemon({
    home: config.MALLEE_HOME,
    config,
    logger,
    ...(values.port !== undefined ? { port: Number(values.port) } : {}),
    ...(credFile ? { credentials: staticCredentials(JSON.parse(readFileSync(credFile, 'utf8'))) } : {}),
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'walrus stopping');
    daemon.close().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'unclean shutdown');
      process.exit(1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} catch (err) {
  logger.fatal({ err }, 'walrus failed to start');
  process.exit(1);
}
