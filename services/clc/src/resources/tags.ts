// Tags on any taggable resource, and the three tag actions. A resource's type is known from its id
// prefix; adding a taggable type is one `registerTaggableType` call naming how to find its owner.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { Ec2Error, errors, q } from '@mallee/aws-protocol';
import { applyFilters } from './filters.js';
import { list, optInt, resourceAction } from './params.js';

export interface Tag { key: string; value: string }

export interface TaggableType {
  /** EC2's resource-type name (DescribeTags' resourceType): 'instance', 'security-group', 'image', … */
  type: string;
  /** Id prefixes before the dash: ['i'], ['vol'], ['emi', 'ami', …]. */
  prefixes: string[];
  /** The owning account of an existing resource, undefined when there is no such resource. */
  ownerOf: (db: Db, id: string) => string | undefined;
  /** The error EC2 gives for an unknown id of this type (also given to non-owners). */
  notFound: (id: string) => Ec2Error;
}

const taggableTypes: TaggableType[] = [];

/** Makes a resource type taggable (volumes, snapshots, addresses register themselves when they land). */
export function registerTaggableType(t: TaggableType): void {
  const clash = taggableTypes.find((o) => o.prefixes.some((p) => t.prefixes.includes(p)));
  if (clash) throw new Error(`id prefix already taggable as ${clash.type}`);
  taggableTypes.push(t);
}

/** An owner lookup over `table`, for types whose rows carry their id and owner columns. */
export function ownerColumn(table: string, idColumn: string, ownerColumnName: string) {
  const sql = `SELECT ${ownerColumnName} FROM ${table} WHERE ${idColumn} = ?`;
  return (db: Db, id: string) => db.prepare(sql).pluck().get(id) as string | undefined;
}

registerTaggableType({
  type: 'instance', prefixes: ['i'], ownerOf: ownerColumn('instances', 'instance_id', 'account_id'),
  notFound: (id) => new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`),
});
registerTaggableType({
  type: 'security-group', prefixes: ['sg'], ownerOf: ownerColumn('security_groups', 'group_id', 'account_id'),
  notFound: (id) => new Ec2Error('InvalidGroup.NotFound', `The security group '${id}' does not exist`),
});
registerTaggableType({
  type: 'image', prefixes: ['emi', 'eki', 'eri', 'ami', 'aki', 'ari'], ownerOf: ownerColumn('images', 'image_id', 'owner_id'),
  notFound: (id) => new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`),
});

const ID_SHAPE = /^([a-z]+)-(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{17})$/;

/** The taggable type of a well-formed id, or InvalidID. */
export function taggableTypeOf(id: string): TaggableType {
  const m = ID_SHAPE.exec(id);
  const t = m && taggableTypes.find((x) => x.prefixes.includes(m[1]!));
  if (!t) throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
  return t;
}

export const TAG_LIMIT = 50;
const KEY_MAX = 127;
const VALUE_MAX = 255;

export function tagSetFor(db: Db, accountId: string, resourceId: string): Tag[] {
  return db.prepare('SELECT key, value FROM tags WHERE account_id = ? AND resource_id = ? ORDER BY key')
    .all(accountId, resourceId) as Tag[];
}

/** Batch form for Describe* of many resources, in one query: resourceId → tags (every id present). */
export function tagSetsFor(db: Db, accountId: string, resourceIds: string[]): Map<string, Tag[]> {
  const out = new Map<string, Tag[]>(resourceIds.map((id) => [id, []]));
  if (!resourceIds.length) return out;
  const rows = db.prepare(`SELECT resource_id AS id, key, value FROM tags
    WHERE account_id = ? AND resource_id IN (SELECT value FROM json_each(?)) ORDER BY key`)
    .all(accountId, JSON.stringify(resourceIds)) as { id: string; key: string; value: string }[];
  for (const r of rows) out.get(r.id)?.push({ key: r.key, value: r.value });
  return out;
}

/** Drops every tag of a resource (when the resource itself goes away). */
export function deleteTagsFor(db: Db, resourceId: string): void {
  db.prepare('DELETE FROM tags WHERE resource_id = ?').run(resourceId);
}

/** Tags as EC2 renders a tagSet. */
export function tagSetXml(tags: Tag[]): { key: string; value: string }[] {
  return tags.map((t) => ({ key: t.key, value: t.value }));
}

function checkKey(key: string | undefined): string {
  if (key === undefined || key === '') throw errors.invalidValue('Tag.N.Key', '', 'Tag keys must not be empty.');
  if (key.length > KEY_MAX) throw new Ec2Error('InvalidParameterValue', `Tag key exceeds the maximum length of ${KEY_MAX} characters`);
  if (key.toLowerCase().startsWith('aws:')) throw new Ec2Error('InvalidParameterValue', "Tag keys starting with 'aws:' are reserved for internal use");
  return key;
}

/** The caller's resources, each with its type; others' and unknown ones fail as the type's NotFound. */
function ownedResources(db: Db, accountId: string, ids: string[]): { id: string; type: string }[] {
  if (!ids.length) throw errors.missing('ResourceId');
  return ids.map((id) => {
    const t = taggableTypeOf(id);
    if (t.ownerOf(db, id) !== accountId) throw t.notFound(id);
    return { id, type: t.type };
  });
}

/** Sets tags on resources the account owns (all or nothing); used by CreateTags and TagSpecification-style callers. */
export function createTags(db: Db, accountId: string, resourceIds: string[], tags: { Key?: string; Value?: string }[]): void {
  if (!tags.length) throw errors.missing('Tag');
  const wanted = tags.map((t) => {
    const value = t.Value ?? '';
    if (value.length > VALUE_MAX) throw new Ec2Error('InvalidParameterValue', `Tag value exceeds the maximum length of ${VALUE_MAX} characters`);
    return { key: checkKey(t.Key), value };
  });
  db.transaction(() => {
    const resources = ownedResources(db, accountId, resourceIds);
    const upsert = db.prepare(`INSERT INTO tags (resource_id, resource_type, account_id, key, value) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value`);
    const keysOf = db.prepare('SELECT key FROM tags WHERE resource_id = ?').pluck();
    for (const r of resources) {
      const keys = new Set(keysOf.all(r.id) as string[]);
      for (const w of wanted) keys.add(w.key);
      if (keys.size > TAG_LIMIT) throw new Ec2Error('TagLimitExceeded', 'The maximum number of Tags for a resource has been reached.');
      for (const w of wanted) upsert.run(r.id, r.type, accountId, w.key, w.value);
    }
  })();
}

const tagList = list(z.object({ Key: z.string().optional(), Value: z.string().optional() }));

/** `TagSpecification.N.ResourceType` + `TagSpecification.N.Tag.M.Key/Value`: tags set by a Create/Run action. */
export const tagSpecificationsShape = list(z.object({ ResourceType: z.string().optional(), Tag: tagList }));
export type TagSpecifications = z.infer<typeof tagSpecificationsShape>;

/**
 * Tags the resources a Create/Run action just made, from its TagSpecification.N (call inside the
 * action's transaction, after the rows exist). A specification for another resource type fails as EC2 does.
 */
export function applyTagSpecifications(db: Db, accountId: string, resourceIds: string[], resourceType: string, specs: TagSpecifications): void {
  const tags = specs.flatMap((spec) => {
    if (spec.ResourceType !== resourceType) {
      throw new Ec2Error('InvalidParameterValue', `'${spec.ResourceType ?? ''}' is not a valid taggable resource type for this operation.`);
    }
    if (!spec.Tag.length) throw new Ec2Error('InvalidParameterValue', 'Tag specification must have at least one tag');
    return spec.Tag;
  });
  if (tags.length && resourceIds.length) createTags(db, accountId, resourceIds, tags);
}

export const createTagsAction = resourceAction('CreateTags',
  z.object({ ResourceId: list(z.string()), Tag: tagList }),
  (db, input, { principal }) => {
    createTags(db, principal.accountId, input.ResourceId, input.Tag);
    return { return: true };
  });

export const deleteTagsAction = resourceAction('DeleteTags',
  z.object({ ResourceId: list(z.string()), Tag: tagList }),
  (db, input, { principal }) => {
    for (const t of input.Tag) checkKey(t.Key);
    db.transaction(() => {
      const resources = ownedResources(db, principal.accountId, input.ResourceId);
      for (const r of resources) {
        // No Tag.N: every tag of the resource; Tag.N.Key alone: that key; with Value: only if it matches.
        if (!input.Tag.length) deleteTagsFor(db, r.id);
        for (const t of input.Tag) {
          if (t.Value === undefined) db.prepare('DELETE FROM tags WHERE resource_id = ? AND key = ?').run(r.id, t.Key);
          else db.prepare('DELETE FROM tags WHERE resource_id = ? AND key = ? AND value = ?').run(r.id, t.Key, t.Value);
        }
      }
    })();
    return { return: true };
  });

interface TagRow { resourceId: string; resourceType: string; key: string; value: string }

export const describeTagsAction = resourceAction('DescribeTags',
  z.object({ Filter: q.filters(), MaxResults: optInt(), NextToken: z.string().optional() }),
  (db, input, { principal }) => {
    const rows = db.prepare(`SELECT resource_id AS resourceId, resource_type AS resourceType, key, value
      FROM tags WHERE account_id = ? ORDER BY resource_id, key`).all(principal.accountId) as TagRow[];
    const kept = applyFilters(rows, input.Filter, {
      key: (t) => t.key,
      value: (t) => t.value,
      'resource-id': (t) => t.resourceId,
      'resource-type': (t) => t.resourceType,
    });
    return { tagSet: kept.map((t) => ({ resourceId: t.resourceId, resourceType: t.resourceType, key: t.key, value: t.value })) };
  });

export const tagActions = [createTagsAction, deleteTagsAction, describeTagsAction];
