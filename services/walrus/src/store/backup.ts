// What a backup of Walrus needs besides walrus.sqlite: the blob files its metadata references, so
// `mallee backup --objects` copies exactly the objects of its snapshot (imported as @mallee/walrus/backup).
import type { Db } from '@mallee/store';
import { join } from 'node:path';

/** Ids of every blob an object version, an upload part or a multipart segment refers to. */
export function referencedBlobIds(db: Db): string[] {
  return db.prepare('SELECT blob FROM objects WHERE blob IS NOT NULL UNION SELECT blob FROM parts UNION SELECT blob FROM object_segments').pluck().all() as string[];
}

/** Where a blob lives, relative to the Walrus home (`walrus/data/<2 hex>/<id>`, as BlobStore lays it out). */
export function blobRelativePath(id: string): string {
  return join('walrus', 'data', id.slice(0, 2), id);
}
