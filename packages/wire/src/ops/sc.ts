// Operations a Storage Controller serves (called by the clc, sender "clc"), named as in Eucalyptus.
// Volumes are created and snapshots uploaded in the background: the clc polls the Describe* ops.
import { z } from 'zod';
import { defineOperation } from '../protocol.js';
import { empty, iscsiTarget, rbdTarget, volumeTarget } from './common.js';

export const SC_CALLER = 'clc';

export const VOLUME_ID = /^vol-[0-9a-f]{8}(?:[0-9a-f]{9})?$/;
export const SNAPSHOT_ID = /^snap-[0-9a-f]{8}(?:[0-9a-f]{9})?$/;
const volumeId = z.string().regex(VOLUME_ID);
const snapshotId = z.string().regex(SNAPSHOT_ID);

/** Where a snapshot lives in Walrus: its manifest object (chunk keys are named inside it). */
export const snapshotLocation = z.object({ bucket: z.string(), manifestKey: z.string() });
export type SnapshotLocation = z.infer<typeof snapshotLocation>;

export const scVolumeStatus = z.enum(['creating', 'available', 'deleting', 'failed']);
export const scVolume = z.object({
  volumeId: z.string(),
  sizeGiB: z.number().int().positive(),
  status: scVolumeStatus,
  /** Restores from a snapshot: percent of its chunks written. */
  progress: z.number().min(0).max(100),
  reason: z.string().optional(),
  /** Initiator addresses the volume is exported to right now. */
  exportedTo: z.array(z.string()).default([]),
  createdAt: z.string(),
});
export type ScVolume = z.infer<typeof scVolume>;

/** How the point-in-time copy was made: guest filesystems frozen, guest paused (crash-consistent), or not attached. */
export const snapshotConsistency = z.enum(['filesystem', 'crash', 'detached']);
export type SnapshotConsistency = z.infer<typeof snapshotConsistency>;

export const scSnapshotStatus = z.enum(['pending', 'completed', 'failed']);
export const scSnapshot = z.object({
  snapshotId: z.string(),
  volumeId: z.string(),
  status: scSnapshotStatus,
  progress: z.number().min(0).max(100),
  sizeGiB: z.number().int().positive(),
  location: snapshotLocation,
  consistency: snapshotConsistency,
  /** The snapshot this one was made incrementally against (same volume), if any. */
  parentSnapshotId: z.string().optional(),
  /** ms the point-in-time copy took (guest I/O was held for about this long). */
  cutMs: z.number().nonnegative().optional(),
  /** Bytes of chunks this snapshot uploaded (the rest were already in Walrus). */
  uploadedBytes: z.number().int().nonnegative(),
  uploadedChunks: z.number().int().nonnegative(),
  reusedChunks: z.number().int().nonnegative(),
  reason: z.string().optional(),
  createdAt: z.string(),
  completedAt: z.string().optional(),
});
export type ScSnapshot = z.infer<typeof scSnapshot>;

/** Idempotent by volumeId. From a snapshot (of any zone): sizeGiB must hold it. */
export const CreateStorageVolume = defineOperation(
  'CreateStorageVolume',
  z.object({ volumeId, sizeGiB: z.number().int().positive(), snapshot: z.object({ snapshotId, location: snapshotLocation }).optional() }),
  z.object({ volume: scVolume }),
);

/** Unexports and deletes; an unknown volume is already deleted. */
export const DeleteStorageVolume = defineOperation('DeleteStorageVolume', z.object({ volumeId }), z.object({ volumeId: z.string(), deleted: z.boolean() }));

export const DescribeStorageVolumes = defineOperation(
  'DescribeStorageVolumes',
  z.object({ volumeIds: z.array(z.string()).default([]) }),
  z.object({ volumes: z.array(scVolume), totalGiB: z.number().int().nonnegative(), maxTotalGiB: z.number().int().nonnegative(), maxVolumeGiB: z.number().int().nonnegative() }),
);

/**
 * Cut a point-in-time copy of the volume now and upload it in the background. Answers once the cut is
 * taken, so the caller can thaw the guest at once. Idempotent by snapshotId.
 */
export const CreateStorageSnapshot = defineOperation(
  'CreateStorageSnapshot',
  z.object({ snapshotId, volumeId, consistency: snapshotConsistency }),
  z.object({ snapshot: scSnapshot }),
);

/** Another snapshot id for the same content (CopySnapshot); served by the SC that holds the source. */
export const CopyStorageSnapshot = defineOperation(
  'CopyStorageSnapshot',
  z.object({ snapshotId, sourceSnapshotId: snapshotId }),
  z.object({ snapshot: scSnapshot }),
);

/** Frees the chunks no other snapshot of this SC uses; an unknown snapshot is already deleted. */
export const DeleteStorageSnapshot = defineOperation('DeleteStorageSnapshot', z.object({ snapshotId }), z.object({ snapshotId: z.string(), deleted: z.boolean() }));

export const DescribeStorageSnapshots = defineOperation(
  'DescribeStorageSnapshots',
  z.object({ snapshotIds: z.array(z.string()).default([]) }),
  z.object({ snapshots: z.array(scSnapshot) }),
);

/** An iSCSI target exporting one volume to one initiator (defined in common.ts: launches carry them too). */
export { iscsiTarget, rbdTarget, volumeTarget };
export type IscsiTarget = z.infer<typeof iscsiTarget>;
export type RbdTarget = z.infer<typeof rbdTarget>;

/**
 * iSCSI: one target + LUN per (volume, initiator), CHAP and an ACL for that address. RBD: the image and the
 * cephx user nodes open it as (nothing to set up per initiator). Idempotent.
 */
export const ExportVolume = defineOperation(
  'ExportVolume',
  z.object({ volumeId, initiatorAddress: z.string().min(1) }),
  z.object({ target: volumeTarget }),
);

/** Removes the export to that initiator (every export of the volume without one). */
export const UnexportVolume = defineOperation('UnexportVolume', z.object({ volumeId, initiatorAddress: z.string().optional() }), empty);
