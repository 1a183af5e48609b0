// sc.sqlite: this SC's volumes, their iSCSI exports, snapshots and the content-addressed chunk index
// (which chunk objects exist in Walrus and how many snapshots use each).
import type { Migration } from '@mallee/store';

export const migrations: Migration[] = [
  {
    id: 1,
    name: 'storage',
    up: `
      CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);

      CREATE TABLE volumes (
        volume_id    TEXT PRIMARY KEY,
        size_gib     INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('creating', 'available', 'deleting', 'failed')),
        reason       TEXT,
        snapshot_id  TEXT,
        snapshot_location TEXT,               -- JSON {bucket, manifestKey} while restoring
        created_at   TEXT NOT NULL
      );

      -- One iSCSI target per (volume, initiator). tid is NULL until tgtd has the target.
      CREATE TABLE exports (
        volume_id    TEXT NOT NULL REFERENCES volumes (volume_id),
        initiator    TEXT NOT NULL,
        iqn          TEXT NOT NULL UNIQUE,
        chap_user    TEXT NOT NULL,
        chap_secret  TEXT NOT NULL,
        tid          INTEGER,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (volume_id, initiator)
      );

      CREATE TABLE snapshots (
        snapshot_id     TEXT PRIMARY KEY,
        volume_id       TEXT NOT NULL,
        size_gib        INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed', 'deleting')),
        consistency     TEXT NOT NULL,
        parent_id       TEXT,
        source_id       TEXT,                 -- CopyStorageSnapshot: the snapshot whose chunks this one shares
        chunk_size      INTEGER NOT NULL,
        cut_path        TEXT,                 -- the point-in-time copy being uploaded
        cut_ms          REAL,
        progress        REAL NOT NULL DEFAULT 0,
        uploaded_bytes  INTEGER NOT NULL DEFAULT 0,
        uploaded_chunks INTEGER NOT NULL DEFAULT 0,
        reused_chunks   INTEGER NOT NULL DEFAULT 0,
        reason          TEXT,
        created_at      TEXT NOT NULL,
        completed_at    TEXT
      );
      CREATE INDEX snapshots_volume ON snapshots (volume_id, status);

      -- A chunk object <prefix>/chunks/<sha256> in Walrus. refs = rows of snapshot_chunks naming it.
      -- A row exists before its object is written and until after it is deleted: no object leaks.
      CREATE TABLE chunks (
        hash   TEXT PRIMARY KEY,
        size   INTEGER NOT NULL,
        refs   INTEGER NOT NULL,
        state  TEXT NOT NULL CHECK (state IN ('uploading', 'stored', 'deleting'))
      );
      CREATE INDEX chunks_state ON chunks (state) WHERE state <> 'stored';

      CREATE TABLE snapshot_chunks (
        snapshot_id TEXT NOT NULL REFERENCES snapshots (snapshot_id),
        idx         INTEGER NOT NULL,
        hash        TEXT NOT NULL REFERENCES chunks (hash),
        PRIMARY KEY (snapshot_id, idx)
      );
      CREATE INDEX snapshot_chunks_hash ON snapshot_chunks (hash);
    `,
  },
];
