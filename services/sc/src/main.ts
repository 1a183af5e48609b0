#!/usr/bin/env node
// `node services/sc/dist/src/main.js [--home DIR] [--conf FILE]`: run the Storage Controller until SIGTERM/SIGINT.
import { runDaemonMain } from '@mallee/config';
import { startDaemon } from './daemon.js';

await runDaemonMain({ name: 'sc', title: 'storage controller', start: ({ config, logger }) => startDaemon({ home: config.MALLEE_HOME, config, logger }) });
