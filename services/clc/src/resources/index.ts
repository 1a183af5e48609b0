// Key pairs, security groups, images and tags: the per-account resources instances refer to.
// The rest of the clc uses the functions below; the EC2 actions are served from `resourceActions`
// (bound once with bindResourcesDatabase(db)) or `resourceActionsFor(db)`.
import type { Db } from '@mallee/store';
import type { Ec2Action } from '@mallee/aws-protocol';
import { groupActions } from './groups.js';
import { imageActions } from './images.js';
import { keyPairActions } from './keypairs.js';
import { boundDatabase, noImageStore, type ResourceAction, type ResourceHooks } from './params.js';
import { tagActions } from './tags.js';

export { resourcesMigration } from './migration.js';
export { findKeyPair, type KeyPairRecord } from './keypairs.js';
export { resolveGroups, ensureDefaultGroup, ipPermissionsOf, type GroupRecord } from './groups.js';
export { checkImageNameFree, findLaunchableImage, findLaunchableKernelOrRamdisk, findVisibleImage, recordImage, settlePendingImages, type ImageRecord } from './images.js';
export {
  tagSetFor, tagSetsFor, deleteTagsFor, createTags, applyTagSpecifications, tagSpecificationsShape, registerTaggableType, ownerColumn,
  type Tag, type TaggableType, type TagSpecifications,
} from './tags.js';
export { applyFilters, filterMatcher, type FieldAccessor } from './filters.js';
export { bindResourcesDatabase, type CheckManifest, type ManifestCheck, type ResourceHooks } from './params.js';
export { newId } from './ids.js';

const allActions: ResourceAction[] = [...keyPairActions, ...groupActions, ...imageActions, ...tagActions];

/** Every EC2 action of this module, served on the database given to `bindResourcesDatabase(db)` at startup. */
export const resourceActions: Ec2Action[] = allActions.map((a) => a(boundDatabase, noImageStore));

/** Every EC2 action of this module, on the given database (no global binding), with the clc's image store. */
export function resourceActionsFor(db: Db, hooks: ResourceHooks = noImageStore): Ec2Action[] {
  return allActions.map((a) => a(() => db, hooks));
}
