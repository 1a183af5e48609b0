// @mallee/clc: the Cloud Controller daemon (EC2 API, accounts, clusters, the source of truth).
export { startDaemon, openClcDatabase, adminKeyFile, walrusKeyFile, type StartOptions, type RunningDaemon } from './daemon.js';
export { buildServer, type ClcServerDeps } from './server.js';
export { coreActions, type Clc } from './actions/index.js';
export { clcMigrations, coreMigration } from './migrations.js';
export { ADMIN_ACCOUNT, createAccount, credentialLookup, getCredentials } from './accounts.js';
export { Clusters, CLC_SENDER } from './clusters.js';
export { ClusterPoller } from './cluster-poller.js';
export { Dispatcher } from './dispatch.js';
export { CloudProperties, propertiesMigration } from './properties.js';
export { DEFAULT_INSTANCE_TYPES, listInstanceTypes } from './instance-types.js';
