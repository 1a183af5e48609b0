#!/usr/bin/env node
// `node services/clc/dist/src/main.js [--home DIR] [--conf FILE]`: run the Cloud Controller until SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '@mallee/config';
import { startDaemon } from './daemon.js';

const { values } = parseArgs({ options: { home: { type: 'string' }, conf: { type: 'string' } } });
const config = loadConfig({ ...(values.conf ? { file: values.conf } : {}), overrides: values.home ? { MALLEE_HOME: values.home } : {} });
const logger = pino({ name: 'clc', level: config.LOG_LEVEL });
try {
  const daemon = await startDaemon({ home: config.MALLEE_HOME, config, logger });
  const stop = (signal: string) => {
    logger.info({ signal }, 'cloud controller stopping');
    daemon.close().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'unclean shutdown');
      process.exit(1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} catch (err) {
  logger.fatal({ err }, 'cloud controller failed to start');
  process.exit(1);
}
