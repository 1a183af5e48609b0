// Operations a Cluster Controller serves (called by the clc), named as in Eucalyptus.
import { z } from 'zod';
import { defineOperation } from '../protocol.js';
import { instanceSpec, nodeInstance, nodeResources, instanceStateName, vmType, empty, attachedVolume } from './common.js';
import { volumeTarget, snapshotConsistency } from './sc.js';

export const ccInstance = nodeInstance.extend({
  node: z.string(),
  /** Set while the instance's node does not answer the cc (since its first failed contact): the state is the last one it reported. */
  nodeUnreachableSince: z.string().optional(),
});
export type CcInstance = z.infer<typeof ccInstance>;

/**
 * Place and start instances. The cc places as many of `instances` as fit (all of them, or refuses
 * with InsufficientInstanceCapacity when fewer than minCount fit). Idempotent by instanceId: an
 * instance the cluster already runs is reported as placed, never started twice.
 */
export const RunInstances = defineOperation(
  'RunInstances',
  z.object({ instances: z.array(instanceSpec).min(1), minCount: z.number().int().positive() }),
  z.object({ placed: z.array(z.object({ instanceId: z.string(), node: z.string() })) }),
);

export const TerminateInstances = defineOperation(
  'TerminateInstances',
  z.object({ instanceIds: z.array(z.string()), force: z.boolean().default(false) }),
  z.object({ instances: z.array(z.object({ instanceId: z.string(), previousState: instanceStateName, state: instanceStateName })) }),
);

export const DescribeInstances = defineOperation(
  'DescribeInstances',
  z.object({ instanceIds: z.array(z.string()).default([]) }),
  z.object({ instances: z.array(ccInstance) }),
);

export const RebootInstances = defineOperation('RebootInstances', z.object({ instanceIds: z.array(z.string()) }), empty);

export const GetConsoleOutput = defineOperation(
  'GetConsoleOutput',
  z.object({ instanceId: z.string() }),
  z.object({ instanceId: z.string(), output: z.string(), timestamp: z.string() }),
);

/**
 * Choose nodes without starting anything, as RunInstances would under the cluster's SCHEDPOLICY, and hold
 * the room for PLACEMENT_HOLD_MS (or until the launch pinned there comes): the clc asks this for EBS-backed
 * launches, whose volumes it has the SC export to the chosen node before it sends the RunInstances. Only
 * what fits is placed; an instance already placed (held, or live on a node) answers its node again.
 * Newer than wire version 1's first cc: an older cc answers InvalidAction.
 */
export const PlaceInstances = defineOperation(
  'PlaceInstances',
  z.object({ instances: z.array(z.object({ instanceId: z.string(), vmType })).min(1) }),
  z.object({ placed: z.array(z.object({ instanceId: z.string(), node: z.string(), url: z.string() })) }),
);

/** Capacity of the cluster: per node, and how many of each given type still fit (Eucalyptus "verbose"). */
export const DescribeResources = defineOperation(
  'DescribeResources',
  z.object({ vmTypes: z.array(vmType).default([]) }),
  z.object({
    nodes: z.array(nodeResources.extend({ node: z.string(), url: z.string(), lastSeen: z.string().optional() })),
    availability: z.array(z.object({ name: z.string(), max: z.number().int(), available: z.number().int() })),
  }),
);

/** Admin: add a node controller to this cluster; the cc issues and returns the node's wire key. */
export const RegisterNode = defineOperation(
  'RegisterNode',
  z.object({ node: z.string(), url: z.string().url() }),
  z.object({ node: z.string(), key: z.string() }),
);
export const DeregisterNode = defineOperation('DeregisterNode', z.object({ node: z.string() }), empty);
export const DescribeNodes = defineOperation(
  'DescribeNodes',
  empty,
  z.object({ nodes: z.array(z.object({ node: z.string(), url: z.string(), state: z.enum(['ENABLED', 'NOTREADY', 'DISABLED']), lastSeen: z.string().optional(), detail: z.string().optional() })) }),
);

// ---- networking (issue 6): the clc tells the cc what its MANAGED networks must look like ----

/** One ingress rule of a group, with a source group already resolved to its network. */
export const networkRule = z.object({
  protocol: z.string(),
  fromPort: z.number().int().optional(),
  toPort: z.number().int().optional(),
  cidr: z.string().optional(),
  /** Source group's network (all its instances are in it), as Eucalyptus writes group-to-group rules. */
  sourceVlan: z.number().int().optional(),
});
export type NetworkRule = z.infer<typeof networkRule>;

/** A (account, security group) private network. */
export const networkSpec = z.object({
  vlan: z.number().int().nonnegative(),
  accountId: z.string(),
  groupId: z.string(),
  groupName: z.string(),
  rules: z.array(networkRule).default([]),
});
export type NetworkSpec = z.infer<typeof networkSpec>;

/** An instance's place on its network: what its DHCP lease is made from. */
export const networkInstance = z.object({ instanceId: z.string(), vlan: z.number().int(), privateIp: z.string(), macAddress: z.string() });
export type NetworkInstance = z.infer<typeof networkInstance>;

export const addressMapping = z.object({ publicIp: z.string(), privateIp: z.string(), instanceId: z.string().optional() });
export type AddressMapping = z.infer<typeof addressMapping>;

/** Bring one network up (bridge, gateway, DHCP, its rules) before instances of it are started. Idempotent. */
export const StartNetwork = defineOperation('StartNetwork', networkSpec, z.object({ vlan: z.number().int(), gateway: z.string(), cidr: z.string() }));

/**
 * The whole desired network state of the cluster: every live network with its rules and every
 * public-address mapping. The cc makes the host match it (stale bridges, chains, rules and
 * addresses go) and keeps a copy, so a restarted cc restores it before the clc sends it again.
 */
export const ConfigureNetwork = defineOperation(
  'ConfigureNetwork',
  z.object({ networks: z.array(networkSpec), addresses: z.array(addressMapping).default([]), instances: z.array(networkInstance).default([]) }),
  z.object({ networks: z.number().int(), addresses: z.number().int(), mode: z.string() }),
);

/** DNAT/SNAT a public address to an instance's private one (moves it when already mapped elsewhere). */
export const AssignAddress = defineOperation('AssignAddress', addressMapping, empty);
export const UnassignAddress = defineOperation('UnassignAddress', z.object({ publicIp: z.string(), privateIp: z.string().optional() }), empty);

// --- volumes (sc) ------------------------------------------------------------------------------

/** Hot-plug an exported volume into the instance on its node; target.chapSecret sealed with the cluster key. */
export const AttachVolume = defineOperation(
  'AttachVolume',
  z.object({ instanceId: z.string(), volumeId: z.string(), device: z.string(), target: volumeTarget }),
  z.object({ volume: attachedVolume }),
);

/** Unplug it; force gives up waiting for the guest and drops it from the domain definition. */
export const DetachVolume = defineOperation(
  'DetachVolume',
  z.object({ instanceId: z.string(), volumeId: z.string(), force: z.boolean().default(false) }),
  z.object({ detached: z.boolean() }),
);

/**
 * Hold the guest's I/O for a point-in-time copy: its filesystems frozen by the guest agent where it runs
 * one, else the guest paused. The node thaws by itself after timeoutMs if ThawInstance never comes.
 */
export const FreezeInstance = defineOperation(
  'FreezeInstance',
  z.object({ instanceId: z.string(), timeoutMs: z.number().int().positive().default(60_000) }),
  z.object({ consistency: snapshotConsistency, frozenMs: z.number().nonnegative() }),
);
export const ThawInstance = defineOperation('ThawInstance', z.object({ instanceId: z.string() }), z.object({ heldMs: z.number().nonnegative() }));

// --- live migration (issue 7) --------------------------------------------------------------------

/**
 * Move a running instance to another node of this cluster without stopping it (libvirt live migration):
 * its private address, MAC, DHCP lease, metadata and public-address mappings stay (they are the cc's);
 * its attached volumes come exported to the destination (their targets' secrets sealed with the cluster key).
 */
export const MigrateInstance = defineOperation(
  'MigrateInstance',
  z.object({
    instanceId: z.string(),
    dest: z.string().min(1),
    volumes: z.array(z.object({ volumeId: z.string(), device: z.string(), target: volumeTarget })).default([]),
  }),
  z.object({ instanceId: z.string(), source: z.string(), dest: z.string(), ms: z.number().nonnegative() }),
);
