// @mallee/walrus: the S3-compatible object store daemon.
export { startDaemon, walrusKeyFile, type StartOptions, type RunningDaemon } from './daemon.js';
export { buildServer, HEALTH_PATH, type WalrusServerDeps } from './server.js';
export { METRICS_PATH, walrusMetrics } from './metrics.js';
export { s3Api, s3Actions, SERVICE_PREFIX, type S3ApiOptions } from './s3/plugin.js';
export { FsObjectStore } from './store/fs-store.js';
export type * from './store/types.js';
export { cachedLookup, clcLookup } from './credentials.js';
export { clcCertificates, type CertificateSource, type Certificates } from './images/link.js';
export { staticCredentials, type StaticKey } from './static-credentials.js';
