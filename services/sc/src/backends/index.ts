// SC_BACKEND → the volume backend.
import { join } from 'node:path';
import type { MalleeConfig } from '@mallee/config';
import { FileBackend } from './file.js';
import { LvmBackend } from './lvm.js';
import type { VolumeBackend } from './types.js';

export type { VolumeBackend } from './types.js';

export function createBackend(config: MalleeConfig, home: string): VolumeBackend {
  return config.SC_BACKEND === 'lvm' ? new LvmBackend(config.SC_LVM_VG) : new FileBackend(join(home, 'sc'));
}
