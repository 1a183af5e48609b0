// Walrus's quotas (Eucalyptus `walrus.*` names; 0 means unlimited) and its decrypted-image cache size. Until Walrus reads them from the
// clc, its own mallee.conf WALRUS_MAX_* settings apply (they are these properties' defaults).
import { integerProperty } from '../define.js';

export const walrusProperties = {
  maxBucketsPerAccount: integerProperty({
    name: 'walrus.storagemaxbucketsperaccount',
    description: 'Buckets an account may own (0 = unlimited)',
    default: 100,
    min: 0,
    conf: { key: 'WALRUS_MAX_BUCKETS_PER_ACCOUNT' },
  }),
  maxBucketSizeMb: integerProperty({
    name: 'walrus.storagemaxbucketsizeinmb',
    description: 'Largest total size of one bucket, MiB (0 = unlimited)',
    default: 0,
    min: 0,
    conf: { key: 'WALRUS_MAX_BUCKET_SIZE_MB' },
  }),
  maxAccountSizeMb: integerProperty({
    name: 'walrus.storagemaxaccountsizeinmb',
    description: "Largest total size of one account's objects, MiB (0 = unlimited; Mallee's own, Eucalyptus had none)",
    default: 0,
    min: 0,
    conf: { key: 'WALRUS_MAX_ACCOUNT_STORAGE_MB' },
  }),
  maxCacheSizeMb: integerProperty({
    name: 'walrus.storagemaxcachesizeinmb',
    description: 'Decrypted images Walrus keeps for NCs, MiB (least recently used go first; an image being served is never evicted)',
    default: 30720,
    min: 0,
  }),
};
