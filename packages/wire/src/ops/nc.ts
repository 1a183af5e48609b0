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
