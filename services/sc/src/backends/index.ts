// SC_BACKEND → the volume backend.
import { join } from 'node:path';
import type { MalleeConfig } from '@mallee/config';
import { FileBackend } from './file.js';
import { LvmBackend } from './lvm.js';
import { RbdBackend } from './rbd.js';
import type { VolumeBackend } from './types.js';

export type { DiffSnapshots, RbdLocation, VolumeBackend } from './types.js';
export { RbdBackend } from './rbd.js';

/** `prefix` is the SC's own name prefix (RBD image names carry it: several SCs may share one pool). */
export function createBackend(config: MalleeConfig, home: string, prefix: string): VolumeBackend {
  switch (config.SC_BACKEND) {
    case 'lvm':
      return new LvmBackend(config.SC_LVM_VG);
    case 'ceph-rbd':
      return new RbdBackend({ conf: config.SC_CEPH_CONF, pool: config.SC_CEPH_POOL, user: config.SC_CEPH_USER, keyring: config.SC_CEPH_KEYRING, tmpDir: join(home, 'sc', 'tmp') }, prefix);
    default:
      return new FileBackend(join(home, 'sc'));
  }
}
