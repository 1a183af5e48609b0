#!/usr/bin/env node
// `node services/cc/dist/src/main.js [--home DIR] [--conf FILE]`: run the Cluster Controller until SIGTERM/SIGINT.
import { runDaemonMain } from '@mallee/config';
import { startDaemon } from './daemon.js';

await runDaemonMain({ name: 'cc', title: 'cluster controller', start: ({ config, logger }) => startDaemon({ home: config.MALLEE_HOME, config, logger }) });
