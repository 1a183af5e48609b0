#!/usr/bin/env node
// `node services/clc/dist/src/main.js [--home DIR] [--conf FILE]`: run the Cloud Controller until SIGTERM/SIGINT.
import { runDaemonMain } from '@mallee/config';
import { startDaemon } from './daemon.js';

await runDaemonMain({ name: 'clc', title: 'cloud controller', start: ({ config, logger }) => startDaemon({ home: config.MALLEE_HOME, config, logger }) });
