#!/usr/bin/env node
// `node services/nc/dist/src/main.js [--home DIR] [--conf FILE]`: run the Node Controller until SIGTERM/SIGINT.
import { runDaemonMain } from '@mallee/config';
import { startDaemon } from './daemon.js';

await runDaemonMain({ name: 'nc', title: 'node controller', start: ({ config, logger }) => startDaemon({ home: config.MALLEE_HOME, config, logger }) });
