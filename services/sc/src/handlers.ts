// The sc.* wire operation table: each operation maps to one StorageController method.
import { handler, sc, type WireHandler } from '@mallee/wire';
import type { StorageController } from './storage-controller.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function scHandlers(s: StorageController): WireHandler<any, any>[] {
  return [
    handler(sc.CreateStorageVolume, (req) => s.createVolume(req)),
    handler(sc.DeleteStorageVolume, (req) => s.deleteVolume(req.volumeId)),
    handler(sc.DescribeStorageVolumes, (req) => s.describeVolumes(req)),
    handler(sc.ExportVolume, (req) => s.exportVolume(req)),
    handler(sc.UnexportVolume, (req) => s.unexportVolume(req)),
    handler(sc.CreateStorageSnapshot, (req) => s.createSnapshot(req)),
    handler(sc.CopyStorageSnapshot, (req) => s.copySnapshot(req)),
    handler(sc.DeleteStorageSnapshot, (req) => s.deleteSnapshot(req.snapshotId)),
    handler(sc.DescribeStorageSnapshots, (req) => s.describeSnapshots(req)),
  ];
}
