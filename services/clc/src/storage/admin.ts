// Admin wire ops of EBS: register-sc (with the block-storage system account whose key the SC uses
// for Walrus) and `mallee describe-volumes --verbose`.
import type { Db } from '@mallee/store';
import { admin, handler, sc, WireError, type WireHandler } from '@mallee/wire';
import { accountByName, createAccount, getCredentials } from '../accounts.js';
import type { StorageControllers } from './controllers.js';
import type { AttachmentRow, VolumeRow } from './records.js';

/** Eucalyptus 4's name for the system account that owns snapshot objects in Walrus. */
export const BLOCKSTORAGE_ACCOUNT = 'blockstorage';

export function blockStorageCredentials(db: Db, walrusUrl: string): admin.BlockStorageCredentials {
  if (!accountByName(db, BLOCKSTORAGE_ACCOUNT)) createAccount(db, BLOCKSTORAGE_ACCOUNT);
  const creds = getCredentials(db, BLOCKSTORAGE_ACCOUNT);
  return { walrusUrl, bucket: `snapshots-${creds.accountId}`, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey };
}

const fromAdmin = (from: string) => from === admin.ADMIN_SENDER;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function storageAdminHandlers(db: Db, controllers: StorageControllers, pollSoon: () => void, registeredWalrus: () => string | undefined): WireHandler<any, any>[] {
  return [
    handler(admin.RegisterStorageController, (req) => {
      // Walrus as registered with the clc (register-walrus), unless the caller names another S3 endpoint.
      const walrusUrl = req.walrusUrl ?? registeredWalrus();
      if (!walrusUrl) throw new WireError('NoSuchEntity', 'no Walrus is registered with the clc: register it first (mallee register-walrus) or pass the Walrus URL', 404);
      const storage = blockStorageCredentials(db, walrusUrl);
      const key = controllers.register(req.zone, req.url);
      pollSoon();
      return { zone: req.zone, key, storage };
    }, fromAdmin),
    handler(admin.DeregisterStorageController, (req) => {
      controllers.deregister(req.zone);
      return {};
    }, fromAdmin),
    handler(admin.DescribeVolumesAdmin, async (req) => {
      const names = new Map((db.prepare('SELECT account_id, name FROM accounts').all() as { account_id: string; name: string }[]).map((a) => [a.account_id, a.name]));
      const scViews = new Map<string, sc.ScVolume>();
      const ctl = controllers.list();
      if (req.verbose) {
        await Promise.all(ctl.map(async (c) => {
          try {
            for (const v of (await controllers.client(c.zone).call(sc.DescribeStorageVolumes, { volumeIds: [] }, { timeoutMs: 5000 })).volumes) scViews.set(v.volumeId, v);
          } catch { /* shown as the controller's state */ }
        }));
      }
      const rows = db.prepare('SELECT * FROM volumes ORDER BY zone, create_time').all() as VolumeRow[];
      return {
        volumes: rows.map((v) => {
          const a = db.prepare('SELECT * FROM volume_attachments WHERE volume_id = ?').get(v.volume_id) as AttachmentRow | undefined;
          const s = scViews.get(v.volume_id);
          return {
            volumeId: v.volume_id, accountName: names.get(v.account_id) ?? v.account_id, zone: v.zone, sizeGiB: v.size_gib, status: v.status,
            ...(v.snapshot_id ? { snapshotId: v.snapshot_id } : {}),
            ...(a ? { instanceId: a.instance_id, device: a.device, attachmentStatus: a.status } : {}),
            ...(s ? { scStatus: s.status, exportedTo: s.exportedTo.join(',') } : {}),
            ...(v.status_reason ? { detail: v.status_reason } : {}),
          };
        }),
        controllers: ctl.map((c) => ({
          zone: c.zone, url: c.url, state: c.state,
          ...(c.totalGiB !== undefined ? { totalGiB: c.totalGiB } : {}), ...(c.maxTotalGiB !== undefined ? { maxTotalGiB: c.maxTotalGiB } : {}),
          ...(c.maxVolumeGiB !== undefined ? { maxVolumeGiB: c.maxVolumeGiB } : {}), ...(c.detail ? { detail: c.detail } : {}),
        })),
      };
    }, fromAdmin),
  ];
}
