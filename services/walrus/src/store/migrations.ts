// walrus.sqlite schema: buckets, every object version (the latest flagged), multipart uploads and parts.
// Rows point at blob ids; a row is written only after its blob is durable.
import type { Migration } from '@mallee/store';

export const migrations: Migration[] = [
  {
    id: 1,
    name: 'buckets, objects, uploads',
    up: `
      CREATE TABLE buckets (
        name TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        location TEXT NOT NULL DEFAULT '',
        versioning TEXT NOT NULL DEFAULT '',
        acl TEXT NOT NULL
      );
      CREATE INDEX buckets_owner ON buckets(owner_id);
      CREATE TABLE objects (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        bucket TEXT NOT NULL REFERENCES buckets(name),
        key TEXT NOT NULL,
        version_id TEXT NOT NULL,
        is_latest INTEGER NOT NULL,
        delete_marker INTEGER NOT NULL DEFAULT 0,
        blob TEXT,
        size INTEGER NOT NULL DEFAULT 0,
        etag TEXT NOT NULL DEFAULT '',
        last_modified TEXT NOT NULL,
        headers TEXT NOT NULL DEFAULT '{}',
        acl TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        UNIQUE (bucket, key, version_id)
      );
      CREATE INDEX objects_latest ON objects(bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
      CREATE INDEX objects_blob ON objects(blob);
      CREATE TABLE uploads (
        upload_id TEXT PRIMARY KEY,
        bucket TEXT NOT NULL REFERENCES buckets(name),
        key TEXT NOT NULL,
        initiated TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        headers TEXT NOT NULL,
        acl TEXT NOT NULL
      );
      CREATE INDEX uploads_key ON uploads(bucket, key, upload_id);
      CREATE TABLE parts (
        upload_id TEXT NOT NULL REFERENCES uploads(upload_id) ON DELETE CASCADE,
        part_number INTEGER NOT NULL,
        blob TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        PRIMARY KEY (upload_id, part_number)
      );
    `,
  },
  { id: 2, name: 'bucket policies', up: 'ALTER TABLE buckets ADD COLUMN policy TEXT' },
  {
    id: 3,
    name: 'bucket usage',
    // Bytes of every stored version (delete markers weigh nothing), kept in step by each commit.
    up: `ALTER TABLE buckets ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
         UPDATE buckets SET bytes = (SELECT COALESCE(SUM(size), 0) FROM objects WHERE objects.bucket = buckets.name);`,
  },
  {
    id: 4,
    name: 'multipart objects as segments',
    // A completed multipart upload keeps its part blobs as the object's segments (blob IS NULL).
    up: `CREATE TABLE object_segments (
           object_seq INTEGER NOT NULL REFERENCES objects(seq) ON DELETE CASCADE,
           idx INTEGER NOT NULL,
           blob TEXT NOT NULL,
           size INTEGER NOT NULL,
           PRIMARY KEY (object_seq, idx)
         );
         CREATE INDEX object_segments_blob ON object_segments(blob);`,
  },
];
