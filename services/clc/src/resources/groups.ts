// Security groups as EC2-Classic/Eucalyptus keep them: per-account named groups with ingress rules.
// State only here; the CC enforces the rules once networking lands.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { Ec2Error, errors, q } from '@mallee/aws-protocol';
import { applyFilters } from './filters.js';
import { GROUP_ID, malformedGroupId, newId } from './ids.js';
import { list, optInt, resourceAction } from './params.js';
import { applyTagSpecifications, deleteTagsFor, tagSetFor, tagSetsFor, tagSetXml, tagSpecificationsShape, type Tag } from './tags.js';
import { instancesUsingGroup } from './usage.js';

export interface GroupRecord { groupId: string; accountId: string; name: string; description: string }

export const DEFAULT_GROUP = 'default';
const DEFAULT_DESCRIPTION = 'default group';

interface GroupRow { group_id: string; account_id: string; name: string; description: string }
const toRecord = (r: GroupRow): GroupRecord => ({ groupId: r.group_id, accountId: r.account_id, name: r.name, description: r.description });

export function groupByName(db: Db, accountId: string, name: string): GroupRecord | undefined {
  const row = db.prepare('SELECT * FROM security_groups WHERE account_id = ? AND name = ?').get(accountId, name) as GroupRow | undefined;
  return row && toRecord(row);
}

export function groupById(db: Db, groupId: string): GroupRecord | undefined {
  const row = db.prepare('SELECT * FROM security_groups WHERE group_id = ?').get(groupId) as GroupRow | undefined;
  return row && toRecord(row);
}

export const groupNotFound = (ref: string) => new Ec2Error('InvalidGroup.NotFound', `The security group '${ref}' does not exist`);

/** Creates the account's "default" group if missing (called when an account is created, and lazily). */
export function ensureDefaultGroup(db: Db, accountId: string): GroupRecord {
  const existing = groupByName(db, accountId, DEFAULT_GROUP);
  if (existing) return existing;
  db.prepare(`INSERT INTO security_groups (group_id, account_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (account_id, name) DO NOTHING`).run(newId('sg'), accountId, DEFAULT_GROUP, DEFAULT_DESCRIPTION, new Date().toISOString());
  return groupByName(db, accountId, DEFAULT_GROUP)!;
}

/** The account's own group by id (InvalidGroupId.Malformed / InvalidGroup.NotFound otherwise). */
export function ownGroupById(db: Db, accountId: string, groupId: string): GroupRecord {
  if (!GROUP_ID.test(groupId)) throw malformedGroupId(groupId);
  const g = groupById(db, groupId);
  if (!g || g.accountId !== accountId) throw groupNotFound(groupId);
  return g;
}

/** The account's own group by name; "default" is created on first use. */
export function ownGroupByName(db: Db, accountId: string, name: string): GroupRecord {
  const g = name === DEFAULT_GROUP ? ensureDefaultGroup(db, accountId) : groupByName(db, accountId, name);
  if (!g) throw groupNotFound(name);
  return g;
}

/** The account's groups by name and/or id (InvalidGroup.NotFound otherwise); none given → the account's "default" group. */
export function resolveGroups(db: Db, accountId: string, ref: { names: string[]; ids: string[] }): GroupRecord[] {
  if (!ref.names.length && !ref.ids.length) return [ensureDefaultGroup(db, accountId)];
  const found = [...ref.names.map((n) => ownGroupByName(db, accountId, n)), ...ref.ids.map((id) => ownGroupById(db, accountId, id))];
  const seen = new Set<string>();
  return found.filter((g) => !seen.has(g.groupId) && seen.add(g.groupId));
}

// ---- names and descriptions, validated as EC2-Classic and Eucalyptus do -------------------------

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

function checkText(param: string, value: string | undefined): string {
  if (value === undefined || value === '') throw errors.missing(param);
  if (!PRINTABLE_ASCII.test(value)) throw errors.invalidValue(param, value, 'Character sets beyond ASCII are not supported.');
  if (value.length > 255) throw errors.invalidValue(param, value, 'Length exceeds maximum of 255.');
  return value;
}

// ---- rules --------------------------------------------------------------------------------------

export interface RuleSpec {
  protocol: string;
  fromPort: number | null;
  toPort: number | null;
  cidr: string | null;
  sourceGroupId: string | null;
}

interface RuleRow { protocol: string; from_port: number | null; to_port: number | null; cidr: string | null; source_group_id: string | null }

const peerShape = z.object({ UserId: z.string().optional(), GroupName: z.string().optional(), GroupId: z.string().optional() });
const permissionShape = z.object({
  IpProtocol: z.string().optional(),
  FromPort: optInt(),
  ToPort: optInt(),
  IpRanges: list(z.object({ CidrIp: z.string().optional(), Description: z.string().optional() })),
  Groups: list(peerShape),
  UserIdGroupPairs: list(peerShape),
});
type Permission = z.infer<typeof permissionShape>;
type Peer = z.infer<typeof peerShape>;

const ingressShape = z.object({
  GroupName: z.string().optional(),
  GroupId: z.string().optional(),
  // The flat form of boto 2 and euca2ools.
  IpProtocol: z.string().optional(),
  FromPort: optInt(),
  ToPort: optInt(),
  CidrIp: z.string().optional(),
  SourceSecurityGroupName: z.string().optional(),
  SourceSecurityGroupOwnerId: z.string().optional(),
  IpPermissions: list(permissionShape),
});
type IngressInput = z.infer<typeof ingressShape>;

const PROTOCOL_NAMES: Record<string, string> = { tcp: 'tcp', '6': 'tcp', udp: 'udp', '17': 'udp', icmp: 'icmp', '1': 'icmp', '-1': '-1', all: '-1' };

export function normalizeProtocol(p: string): string {
  const v = p.trim().toLowerCase();
  const named = PROTOCOL_NAMES[v];
  if (named) return named;
  if (/^\d{1,3}$/.test(v) && Number(v) <= 255) return String(Number(v));
  throw new Ec2Error('InvalidParameterValue', `Invalid value '${p}' for IP protocol. Unknown protocol.`);
}

function portRange(protocol: string, from: number | undefined, to: number | undefined): [number | null, number | null] {
  if (protocol === 'tcp' || protocol === 'udp') {
    if (from === undefined || to === undefined) {
      throw new Ec2Error('InvalidParameterValue', 'Invalid value for portRange. Must specify both from and to ports with TCP/UDP.');
    }
    for (const [name, v] of [['fromPort', from], ['toPort', to]] as const) {
      if (v < 0 || v > 65535) throw new Ec2Error('InvalidParameterValue', `Invalid value '${v}' for ${name}. Ports must be between 0 and 65535.`);
    }
    if (from > to) throw new Ec2Error('InvalidParameterValue', `Invalid TCP/UDP port range: fromPort (${from}) is greater than toPort (${to}).`);
    return [from, to];
  }
  if (protocol === 'icmp') {
    // ICMP: FromPort is the type, ToPort the code; -1 means all.
    const type = from ?? -1;
    const code = to ?? -1;
    for (const [name, v] of [['ICMP type', type], ['ICMP code', code]] as const) {
      if (v < -1 || v > 255) throw new Ec2Error('InvalidParameterValue', `Invalid value '${v}' for ${name}. Must be between -1 and 255.`);
    }
    return [type, code];
  }
  return [null, null];
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

export function checkCidr(cidr: string): string {
  const m = CIDR.exec(cidr.trim());
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) {
    throw errors.invalidValue('cidrIp', cidr, 'This is not a valid CIDR block.');
  }
  return cidr.trim();
}

function sourceGroup(db: Db, accountId: string, peer: Peer): GroupRecord {
  if (peer.GroupId) {
    if (!GROUP_ID.test(peer.GroupId)) throw malformedGroupId(peer.GroupId);
    const g = groupById(db, peer.GroupId);
    if (!g || (peer.UserId && peer.UserId !== g.accountId)) throw groupNotFound(peer.GroupId);
    return g;
  }
  if (!peer.GroupName) throw errors.missing('GroupName or GroupId of the source group');
  const owner = peer.UserId || accountId;
  const g = owner === accountId ? ownGroupByName(db, accountId, peer.GroupName) : groupByName(db, owner, peer.GroupName);
  if (!g) throw groupNotFound(peer.GroupName);
  return g;
}

/** Expands one IpPermission into one rule per peer. A permission without peers opens to 0.0.0.0/0, as EC2-Classic did. */
function rulesOf(db: Db, accountId: string, p: Permission): RuleSpec[] {
  if (!p.IpProtocol) throw errors.missing('IpProtocol');
  const protocol = normalizeProtocol(p.IpProtocol);
  const [fromPort, toPort] = portRange(protocol, p.FromPort, p.ToPort);
  const peers = [...p.Groups, ...p.UserIdGroupPairs];
  const cidrs = p.IpRanges.map((r) => r.CidrIp).filter((c): c is string => !!c);
  if (!peers.length && !cidrs.length) cidrs.push('0.0.0.0/0');
  return [
    ...cidrs.map((c) => ({ protocol, fromPort, toPort, cidr: checkCidr(c), sourceGroupId: null })),
    ...peers.map((peer) => ({ protocol, fromPort, toPort, cidr: null, sourceGroupId: sourceGroup(db, accountId, peer).groupId })),
  ];
}

/** The permissions of an Authorize/Revoke request, flat (boto 2, euca2ools) or IpPermissions form. */
function requestedRules(db: Db, accountId: string, input: IngressInput): RuleSpec[] {
  const permissions: Permission[] = [...input.IpPermissions];
  const flatPeer = input.SourceSecurityGroupName
    ? [{ GroupName: input.SourceSecurityGroupName, UserId: input.SourceSecurityGroupOwnerId }] : [];
  if (input.IpProtocol) {
    permissions.push({
      IpProtocol: input.IpProtocol, FromPort: input.FromPort, ToPort: input.ToPort,
      IpRanges: input.CidrIp ? [{ CidrIp: input.CidrIp }] : [], Groups: flatPeer, UserIdGroupPairs: [],
    });
  } else if (flatPeer.length) {
    // EC2-Classic: a source group without a protocol grants all of TCP, UDP and ICMP from it.
    for (const [IpProtocol, FromPort, ToPort] of [['tcp', 0, 65535], ['udp', 0, 65535], ['icmp', -1, -1]] as const) {
      permissions.push({ IpProtocol, FromPort, ToPort, IpRanges: [], Groups: flatPeer, UserIdGroupPairs: [] });
    }
  } else if (input.CidrIp || input.FromPort !== undefined || input.ToPort !== undefined) {
    throw errors.missing('IpProtocol');
  }
  if (!permissions.length) throw errors.missing('IpPermissions');
  const specs = permissions.flatMap((p) => rulesOf(db, accountId, p));
  const seen = new Set<string>();
  return specs.filter((s) => { const k = JSON.stringify(s); return !seen.has(k) && seen.add(k); });
}

function targetGroup(db: Db, accountId: string, input: { GroupName?: string; GroupId?: string }): GroupRecord {
  if (input.GroupId) return ownGroupById(db, accountId, input.GroupId);
  if (input.GroupName) return ownGroupByName(db, accountId, input.GroupName);
  throw errors.missing('groupName or groupId');
}

const findRule = (db: Db, groupId: string, r: RuleSpec) => db.prepare(`SELECT rule_id FROM security_group_rules
  WHERE group_id = ? AND protocol = ? AND from_port IS ? AND to_port IS ? AND cidr IS ? AND source_group_id IS ?`)
  .pluck().get(groupId, r.protocol, r.fromPort, r.toPort, r.cidr, r.sourceGroupId) as number | undefined;

function describeRule(r: RuleSpec): string {
  const proto = r.protocol === '-1' ? 'ALL' : r.protocol.toUpperCase();
  return `peer: ${r.cidr ?? r.sourceGroupId}, ${proto}, from port: ${r.fromPort ?? -1}, to port: ${r.toPort ?? -1}, ALLOW`;
}

export function authorizeIngress(db: Db, accountId: string, input: IngressInput): void {
  db.transaction(() => {
    const group = targetGroup(db, accountId, input);
    const insert = db.prepare(`INSERT INTO security_group_rules (group_id, protocol, from_port, to_port, cidr, source_group_id)
      VALUES (?, ?, ?, ?, ?, ?)`);
    for (const r of requestedRules(db, accountId, input)) {
      if (findRule(db, group.groupId, r) !== undefined) {
        throw new Ec2Error('InvalidPermission.Duplicate', `the specified rule "${describeRule(r)}" already exists`);
      }
      insert.run(group.groupId, r.protocol, r.fromPort, r.toPort, r.cidr, r.sourceGroupId);
    }
  })();
}

export function revokeIngress(db: Db, accountId: string, input: IngressInput): void {
  db.transaction(() => {
    const group = targetGroup(db, accountId, input);
    const remove = db.prepare('DELETE FROM security_group_rules WHERE rule_id = ?');
    for (const r of requestedRules(db, accountId, input)) {
      const id = findRule(db, group.groupId, r);
      if (id === undefined) throw new Ec2Error('InvalidPermission.NotFound', 'The specified rule does not exist in this security group.');
      remove.run(id);
    }
  })();
}

/** A group's ingress rules as EC2 renders ipPermissions: one item per protocol and port range. */
export function ipPermissionsOf(db: Db, groupId: string): Record<string, unknown>[] {
  const rows = db.prepare(`SELECT protocol, from_port, to_port, cidr, source_group_id FROM security_group_rules
    WHERE group_id = ? ORDER BY rule_id`).all(groupId) as RuleRow[];
  const byRange = new Map<string, { ipProtocol: string; fromPort?: number; toPort?: number; groups: Record<string, string>[]; ipRanges: { cidrIp: string }[] }>();
  for (const r of rows) {
    const k = `${r.protocol}/${r.from_port}/${r.to_port}`;
    let p = byRange.get(k);
    if (!p) {
      p = { ipProtocol: r.protocol, fromPort: r.from_port ?? undefined, toPort: r.to_port ?? undefined, groups: [], ipRanges: [] };
      byRange.set(k, p);
    }
    if (r.cidr) p.ipRanges.push({ cidrIp: r.cidr });
    if (r.source_group_id) {
      const g = groupById(db, r.source_group_id);
      if (g) p.groups.push({ userId: g.accountId, groupId: g.groupId, groupName: g.name });
    }
  }
  return [...byRange.values()];
}

/** Tags of groups that may belong to several accounts (an administrator's "verbose"), one query per account. */
function tagsByAccount(db: Db, groups: GroupRecord[]): Map<string, Tag[]> {
  const out = new Map<string, Tag[]>();
  for (const accountId of new Set(groups.map((g) => g.accountId))) {
    const ids = groups.filter((g) => g.accountId === accountId).map((g) => g.groupId);
    for (const [id, t] of tagSetsFor(db, accountId, ids)) out.set(id, t);
  }
  return out;
}

// ---- actions ------------------------------------------------------------------------------------

export const createSecurityGroupAction = resourceAction('CreateSecurityGroup',
  z.object({ GroupName: z.string().optional(), GroupDescription: z.string().optional(), VpcId: z.string().optional(), TagSpecification: tagSpecificationsShape }),
  (db, input, { principal }) => {
    const name = checkText('GroupName', input.GroupName);
    const description = checkText('GroupDescription', input.GroupDescription);
    if (input.VpcId) throw new Ec2Error('InvalidVpcID.NotFound', `VpcID ${input.VpcId} does not exist.`);
    if (/^sg-/i.test(name)) throw errors.invalidValue('GroupName', name, 'Group names may not be in the format sg-*.');
    const groupId = newId('sg');
    db.transaction(() => {
      ensureDefaultGroup(db, principal.accountId);
      if (groupByName(db, principal.accountId, name)) throw new Ec2Error('InvalidGroup.Duplicate', `The security group '${name}' already exists`);
      db.prepare('INSERT INTO security_groups (group_id, account_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(groupId, principal.accountId, name, description, new Date().toISOString());
      applyTagSpecifications(db, principal.accountId, [groupId], 'security-group', input.TagSpecification);
    })();
    return { return: true, groupId, tagSet: input.TagSpecification.length ? tagSetXml(tagSetFor(db, principal.accountId, groupId)) : undefined };
  });

export const deleteSecurityGroupAction = resourceAction('DeleteSecurityGroup',
  z.object({ GroupName: z.string().optional(), GroupId: z.string().optional() }),
  (db, input, { principal }) => {
    db.transaction(() => {
      const group = targetGroup(db, principal.accountId, input);
      if (group.name === DEFAULT_GROUP) {
        throw new Ec2Error('CannotDelete', `the specified group: "${group.groupId}" name: "${DEFAULT_GROUP}" cannot be deleted by a user`);
      }
      if (instancesUsingGroup(db, group).length) {
        throw new Ec2Error('InvalidGroup.InUse', `There are active instances using security group '${group.name}'`);
      }
      const users = db.prepare(`SELECT DISTINCT group_id FROM security_group_rules WHERE source_group_id = ? AND group_id <> ?`)
        .pluck().all(group.groupId, group.groupId) as string[];
      if (users.length) throw new Ec2Error('InvalidGroup.InUse', `Group ${group.groupId} is used by groups: ${users.join(' ')}`);
      db.prepare('DELETE FROM security_groups WHERE group_id = ?').run(group.groupId);
      deleteTagsFor(db, group.groupId);
    })();
    return { return: true };
  });

export const describeSecurityGroupsAction = resourceAction('DescribeSecurityGroups',
  z.object({ GroupName: list(z.string()), GroupId: list(z.string()), Filter: q.filters() }),
  (db, input, { principal }) => {
    ensureDefaultGroup(db, principal.accountId);
    // Eucalyptus: an administrator asking for "verbose" sees every account's groups.
    const verbose = principal.isAdmin && input.GroupName.includes('verbose');
    const names = input.GroupName.filter((n) => !(verbose && n === 'verbose'));
    let groups: GroupRecord[];
    if (names.length || input.GroupId.length) {
      groups = resolveGroups(db, principal.accountId, { names, ids: input.GroupId });
    } else {
      const rows = (verbose
        ? db.prepare('SELECT * FROM security_groups ORDER BY account_id, name').all()
        : db.prepare('SELECT * FROM security_groups WHERE account_id = ? ORDER BY name').all(principal.accountId)) as GroupRow[];
      groups = rows.map(toRecord);
    }
    const rules = new Map(groups.map((g) => [g.groupId, ipPermissionsOf(db, g.groupId)]));
    const tags = tagsByAccount(db, groups);
    const tagsOf = (g: GroupRecord) => tags.get(g.groupId) ?? [];
    const perms = (g: GroupRecord) => rules.get(g.groupId) as { ipProtocol: string; fromPort?: number; toPort?: number; groups: Record<string, string>[]; ipRanges: { cidrIp: string }[] }[];
    const kept = applyFilters(groups, input.Filter, {
      'group-name': (g) => g.name,
      'group-id': (g) => g.groupId,
      description: (g) => g.description,
      'owner-id': (g) => g.accountId,
      'ip-permission.protocol': (g) => perms(g).map((p) => p.ipProtocol),
      'ip-permission.from-port': (g) => perms(g).map((p) => p.fromPort),
      'ip-permission.to-port': (g) => perms(g).map((p) => p.toPort),
      'ip-permission.cidr': (g) => perms(g).flatMap((p) => p.ipRanges.map((r) => r.cidrIp)),
      'ip-permission.group-name': (g) => perms(g).flatMap((p) => p.groups.map((x) => x.groupName)),
      'ip-permission.group-id': (g) => perms(g).flatMap((p) => p.groups.map((x) => x.groupId)),
      'ip-permission.user-id': (g) => perms(g).flatMap((p) => p.groups.map((x) => x.userId)),
    }, tagsOf);
    return {
      securityGroupInfo: kept.map((g) => ({
        ownerId: g.accountId,
        groupId: g.groupId,
        groupName: g.name,
        groupDescription: g.description,
        ipPermissions: rules.get(g.groupId),
        ipPermissionsEgress: [],
        tagSet: tagSetXml(tagsOf(g)),
      })),
    };
  });

export const authorizeSecurityGroupIngressAction = resourceAction('AuthorizeSecurityGroupIngress', ingressShape,
  (db, input, { principal }) => {
    authorizeIngress(db, principal.accountId, input);
    return { return: true };
  });

export const revokeSecurityGroupIngressAction = resourceAction('RevokeSecurityGroupIngress', ingressShape,
  (db, input, { principal }) => {
    revokeIngress(db, principal.accountId, input);
    return { return: true };
  });

export const groupActions = [
  createSecurityGroupAction, deleteSecurityGroupAction, describeSecurityGroupsAction,
  authorizeSecurityGroupIngressAction, revokeSecurityGroupIngressAction,
];
