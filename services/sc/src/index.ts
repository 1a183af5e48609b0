// @mallee/sc: the Storage Controller (EBS volumes over iSCSI, snapshots into Walrus).
export { startDaemon, scKeyFile, blockStorageFile, type StartOptions, type RunningDaemon } from './daemon.js';
export { StorageController } from './storage-controller.js';
export { parseTargets, tgt, tgtOn, type Tgt, type TgtTarget } from './tgt.js';
export { S3Client } from './s3.js';
export { IQN_BASE } from './exports.js';
export type { Manifest, RbdManifest } from './snapshots.js';
export { keyOf, monitorsOf } from './backends/rbd.js';
