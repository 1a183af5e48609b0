// Operations a Node Controller serves (called by its Cluster Controller), named as in Eucalyptus.
import { z } from 'zod';
import { defineOperation } from '../protocol.js';
import { instanceSpec, nodeInstance, nodeResources, instanceStateName, empty, attachedVolume } from './common.js';
import { volumeTarget, snapshotConsistency } from './sc.js';

export const ncRunInstance = defineOperation('ncRunInstance', instanceSpec, z.object({ instance: nodeInstance }));

export const ncTerminateInstance = defineOperation(
  'ncTerminateInstance',
  z.object({ instanceId: z.string(), force: z.boolean().default(false) }),
  z.object({ instanceId: z.string(), previousState: instanceStateName, state: instanceStateName }),
);

export const ncRebootInstance = defineOperation('ncRebootInstance', z.object({ instanceId: z.string() }), empty);

export const ncDescribeInstances = defineOperation(
  'ncDescribeInstances',
  z.object({ instanceIds: z.array(z.string()).default([]) }),
  z.object({ instances: z.array(nodeInstance) }),
);

export const ncDescribeResource = defineOperation('ncDescribeResource', empty, nodeResources);

export const ncGetConsoleOutput = defineOperation(
  'ncGetConsoleOutput',
  z.object({ instanceId: z.string() }),
  /** output: base64 of the last 64 KiB of the serial console, as EC2 returns it. */
  z.object({ instanceId: z.string(), output: z.string(), timestamp: z.string() }),
);

// --- volumes (sc) ------------------------------------------------------------------------------

/** target.chapSecret is sealed with the node's key. A volume attached elsewhere on this node is refused. */
export const ncAttachVolume = defineOperation(
  'ncAttachVolume',
  z.object({ instanceId: z.string(), volumeId: z.string(), device: z.string(), target: volumeTarget }),
  z.object({ volume: attachedVolume }),
);
export const ncDetachVolume = defineOperation(
  'ncDetachVolume',
  z.object({ instanceId: z.string(), volumeId: z.string(), force: z.boolean().default(false) }),
  z.object({ detached: z.boolean() }),
);
export const ncFreezeInstance = defineOperation(
  'ncFreezeInstance',
  z.object({ instanceId: z.string(), timeoutMs: z.number().int().positive().default(60_000) }),
  z.object({ consistency: snapshotConsistency, frozenMs: z.number().nonnegative() }),
);
export const ncThawInstance = defineOperation('ncThawInstance', z.object({ instanceId: z.string() }), z.object({ heldMs: z.number().nonnegative() }));

// --- live migration (issue 7), Eucalyptus's ncMigrateInstances in steps: the cc reads the launch from the
// source node, has the destination prepare for it (disks, network, volume secrets), has the source hand the
// running guest over by libvirt migration, then tells the destination whether it got it. A node of the
// previous wire version does not know these operations: the cc reports that as the node's, not as a failure.

/** What the source node sends the destination: the launch as the source ran it (network included). */
export const ncMigrationSource = defineOperation(
  'ncMigrationSource',
  z.object({ instanceId: z.string() }),
  z.object({ spec: instanceSpec, launchTime: z.string() }),
);

/** An attached volume, exported to the destination node; its target's secret sealed with the destination node's key. */
export const migrationVolume = z.object({ volumeId: z.string(), device: z.string(), target: volumeTarget });
export type MigrationVolume = z.infer<typeof migrationVolume>;

/** How the destination lays the guest out: the source rewrites the domain definition to it before migrating. */
export const migrationDestination = z.object({
  /** The instance directory on the destination (same file names as on the source). */
  instanceDir: z.string(),
  /** The destination NC's owner tag (its home), written into the domain's Mallee metadata. */
  owner: z.string(),
  /** Per attached volume, the destination's `<source>` element of its iSCSI disk (its export, its secret). */
  disks: z.array(z.object({ volumeId: z.string(), source: z.string() })).default([]),
});
export type MigrationDestination = z.infer<typeof migrationDestination>;

/** On the destination: capacity checked and held, the instance's disks built empty on the same base image, its bridge and anti-spoofing rules up. */
export const ncPrepareMigration = defineOperation(
  'ncPrepareMigration',
  z.object({ spec: instanceSpec, launchTime: z.string(), volumes: z.array(migrationVolume).default([]) }),
  z.object({ destination: migrationDestination }),
);

/** On the source: live-migrate the guest to the destination's libvirtd (peer to peer, local disks copied incrementally). */
export const ncMigrateInstance = defineOperation(
  'ncMigrateInstance',
  z.object({
    instanceId: z.string(),
    /** The destination libvirtd as the source libvirtd reaches it, e.g. qemu+tcp://10.0.0.3/system. */
    libvirtUri: z.string().min(1),
    /** Where the migration stream (and the disks' NBD copy) goes, e.g. tcp://10.0.0.3. */
    migrateUri: z.string().min(1),
    destination: migrationDestination,
  }),
  /** console: base64 of the guest's serial console so far (the last 64 KiB), for the destination to keep. */
  z.object({ instanceId: z.string(), ms: z.number().nonnegative(), console: z.string().optional() }),
);

/** On the destination: the migration went through (track the guest as running) or not (remove what prepare made). */
export const ncFinishMigration = defineOperation(
  'ncFinishMigration',
  /** console: what the source's ncMigrateInstance answered, kept before the console output written here. */
  z.object({ instanceId: z.string(), succeeded: z.boolean(), console: z.string().optional() }),
  z.object({ instance: nodeInstance.optional() }),
);
