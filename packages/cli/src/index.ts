// @mallee/cli as a library: the launcher and credential writers the `mallee` command is made of.
export * from './home.js';
export * from './daemons.js';
export * from './admin.js';
export * from './credentials.js';
export * from './cloud.js';
export * from './output.js';
export { progress, waitWithProgress, formatBytes, type Progress, type ProgressOptions } from './progress.js';
