#!/usr/bin/env node
// `node services/walrus/dist/src/main.js [--home DIR] [--conf FILE] [--port N]`: run Walrus until SIGTERM/SIGINT.
// MALLEE_WALRUS_CREDENTIALS=FILE (JSON {accessKeyId: {secretAccessKey, accountId, accountName, isAdmin}})
// replaces the clc lookup, for running Walrus alone.
import { readFileSync } from 'node:fs';
import { runDaemonMain } from '@mallee/config';
import { startDaemon } from './daemon.js';
import { staticCredentials } from './static-credentials.js';

await runDaemonMain({
  name: 'walrus',
  title: 'walrus',
  extraOptions: { port: { type: 'string' } },
  start: ({ config, logger, args }) => {
    const credFile = process.env.MALLEE_WALRUS_CREDENTIALS;
    return startDaemon({
      home: config.MALLEE_HOME,
      config,
      logger,
      ...(typeof args.port === 'string' ? { port: Number(args.port) } : {}),
      ...(credFile ? { credentials: staticCredentials(JSON.parse(readFileSync(credFile, 'utf8'))) } : {}),
    });
  },
});
