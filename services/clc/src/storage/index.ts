// EBS in the clc: volumes, attachments and snapshots (EC2 actions), the storage controllers of the
// zones, their poller and admin ops. The SCs do the work; this module keeps the users' view true.
import type { Ec2Action } from '@mallee/aws-protocol';
import { Ec2Error } from '@mallee/aws-protocol';
import { ownerColumn, registerTaggableType } from '../resources/index.js';
import { attachActions } from './attach.js';
import { createImageAction } from './create-image.js';
import { snapshotActions } from './snapshot-actions.js';
import { volumeActions, type StorageContext } from './volume-actions.js';

export { bootVolumesMigration, storageMigration, volumeClientTokenMigration } from './migration.js';
export { createRootVolumes, recordRootVolumes, withBootVolumes, type RootVolumeSpec } from './boot-volumes.js';
export { restorableSnapshot } from './records.js';
export { StorageControllers } from './controllers.js';
export { StoragePoller } from './poller.js';
export { storageAdminHandlers, BLOCKSTORAGE_ACCOUNT } from './admin.js';
export { attachmentsOfInstances } from './records.js';
import type { StorageControllers } from './controllers.js';
import type { ServiceStatus } from '../services.js';

/** The zones' SCs for DescribeServices, as the storage poller last saw them. */
export function storageServices(controllers: StorageControllers): ServiceStatus[] {
  return controllers.list().map((c) => ({
    type: 'sc', name: c.zone, partition: c.zone, url: c.url, state: c.state,
    ...(c.lastContact ? { lastContact: c.lastContact } : {}), ...(c.detail ? { detail: c.detail } : {}),
  }));
}
export type { StorageContext } from './volume-actions.js';

registerTaggableType({
  type: 'volume', prefixes: ['vol'], ownerOf: ownerColumn('volumes', 'volume_id', 'account_id'),
  notFound: (id) => new Ec2Error('InvalidVolume.NotFound', `The volume '${id}' does not exist.`),
});
registerTaggableType({
  type: 'snapshot', prefixes: ['snap'], ownerOf: ownerColumn('snapshots', 'snapshot_id', 'account_id'),
  notFound: (id) => new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`),
});

export function storageActions(s: StorageContext, region: string): Ec2Action[] {
  return [...volumeActions(s), ...attachActions(s), ...snapshotActions(s, region), createImageAction(s)] as Ec2Action[];
}
