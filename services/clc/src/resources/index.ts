// Key pairs, security groups, images and tags: the per-account resources instances refer to.
// CONTRACT STUB: the signatures below are what the rest of the clc codes against; the bodies are
// being written by the resources engineer (services/clc/src/resources/ is theirs).
import type { Db, Migration } from '@mallee/store';
import { Ec2Error, type Ec2Action, type Principal, type Filter } from '@mallee/aws-protocol';

export interface KeyPairRecord { accountId: string; name: string; fingerprint: string; /** OpenSSH public key line */ publicKey: string }
export interface GroupRecord { groupId: string; accountId: string; name: string; description: string }
export interface ImageRecord {
  imageId: string; ownerId: string; name: string; location: string;
  type: 'machine' | 'kernel' | 'ramdisk'; architecture: string; state: 'available' | 'pending' | 'failed' | 'deregistered';
  isPublic: boolean; kernelId?: string; ramdiskId?: string; platform?: string;
  rootDeviceType: 'instance-store' | 'ebs'; rootDeviceName?: string; description?: string;
}
export interface Tag { key: string; value: string }

/** Migration 2 (tables: key_pairs, security_groups, security_group_rules, images, image_launch_permissions, tags). Migration 1 is the core's (accounts, instances, …). */
export const resourcesMigration: Migration = { id: 2, name: 'resources', up: '' };

/** Every EC2 action of this module (key pairs, groups, images, tags). */
export const resourceActions: Ec2Action[] = [];

export function findKeyPair(_db: Db, _accountId: string, _name: string): KeyPairRecord | undefined {
  return undefined;
}
/** The account's groups by name and/or id (InvalidGroup.NotFound otherwise); none given → the account's "default" group. */
export function resolveGroups(_db: Db, _accountId: string, _ref: { names: string[]; ids: string[] }): GroupRecord[] {
  throw new Ec2Error('InternalError', 'not implemented yet');
}
/** Creates the account's "default" group if missing (called when an account is created). */
export function ensureDefaultGroup(_db: Db, _accountId: string): GroupRecord {
  throw new Ec2Error('InternalError', 'not implemented yet');
}
/** An image the principal may launch (own, public or launch permission): InvalidAMIID.Malformed / .NotFound otherwise. */
export function findLaunchableImage(_db: Db, _principal: Principal, _imageId: string): ImageRecord {
  throw new Ec2Error('InternalError', 'not implemented yet');
}
/** Kernel/ramdisk lookup for RunInstances (InvalidKernelID.NotFound / InvalidRAMDiskID.NotFound style errors). */
export function findLaunchableKernelOrRamdisk(_db: Db, _principal: Principal, _id: string, _type: 'kernel' | 'ramdisk'): ImageRecord {
  throw new Ec2Error('InternalError', 'not implemented yet');
}
export function tagSetFor(_db: Db, _accountId: string, _resourceId: string): Tag[] {
  return [];
}
/** Batch form for Describe* of many resources: resourceId → tags. */
export function tagSetsFor(_db: Db, _accountId: string, _resourceIds: string[]): Map<string, Tag[]> {
  return new Map();
}
export function deleteTagsFor(_db: Db, _resourceId: string): void {}

/**
 * EC2 Describe* filtering: keeps items matching every filter (values OR'ed, `*` and `?` wildcards).
 * `fields` maps a filter name to the item's value(s); `tag:KEY`, `tag-key`, `tag-value` use tagsOf.
 * An unknown filter name throws InvalidParameterValue ("The filter 'x' is invalid").
 */
export function applyFilters<T>(items: T[], filters: Filter[], _fields: Record<string, (t: T) => unknown>, _tagsOf?: (t: T) => Tag[]): T[] {
  return filters.length ? [] : items;
}
