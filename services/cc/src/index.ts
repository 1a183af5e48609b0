// @mallee/cc: the Cluster Controller daemon.
export { startDaemon, cloudKeyFile, type StartOptions, type RunningDaemon } from './daemon.js';
export { buildServer, type CcServerDeps } from './server.js';
export { Cluster } from './cluster.js';
export { Scheduler, fitCount, type SchedPolicy } from './scheduler.js';
