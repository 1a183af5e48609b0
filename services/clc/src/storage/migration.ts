// Migration 5: EBS. Storage controllers (one per zone), volumes and their attachments, snapshots and
// who may create volumes from them, and deletions the SC has not confirmed yet (retried by the poller).
import type { Migration } from '@mallee/store';

export const storageMigration: Migration = {
  id: 5,
  name: 'storage',
  up: `
    CREATE TABLE storage_controllers (
      zone          TEXT PRIMARY KEY,
      url           TEXT NOT NULL,
      wire_key      TEXT NOT NULL,             -- the key the clc signs with (the SC's keys/sc.key)
      state         TEXT NOT NULL DEFAULT 'NOTREADY',
      detail        TEXT,
      last_contact  TEXT,
      total_gib     INTEGER,
      max_total_gib INTEGER,
      max_volume_gib INTEGER,
      registered_at TEXT NOT NULL
    );

    CREATE TABLE volumes (
      volume_id     TEXT PRIMARY KEY,
      account_id    TEXT NOT NULL,
      zone          TEXT NOT NULL,
      size_gib      INTEGER NOT NULL,
      snapshot_id   TEXT,
      volume_type   TEXT NOT NULL DEFAULT 'standard',
      status        TEXT NOT NULL CHECK (status IN ('creating', 'available', 'in-use', 'deleting', 'error')),
      status_reason TEXT,
      create_time   TEXT NOT NULL
    );
    CREATE INDEX volumes_account ON volumes (account_id, status);
    CREATE INDEX volumes_zone ON volumes (zone, status);

    -- One attachment per volume (never two instances); a device name once per instance.
    CREATE TABLE volume_attachments (
      volume_id     TEXT PRIMARY KEY REFERENCES volumes (volume_id) ON DELETE CASCADE,
      instance_id   TEXT NOT NULL,
      device        TEXT NOT NULL,
      status        TEXT NOT NULL CHECK (status IN ('attaching', 'attached', 'detaching')),
      attach_time   TEXT NOT NULL,
      initiator     TEXT,
      guest_device  TEXT,
      UNIQUE (instance_id, device)
    );

    CREATE TABLE snapshots (
      snapshot_id     TEXT PRIMARY KEY,
      account_id      TEXT NOT NULL,
      volume_id       TEXT NOT NULL,
      volume_size     INTEGER NOT NULL,
      zone            TEXT NOT NULL,           -- the SC that holds its chunks
      status          TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'error')),
      progress        REAL NOT NULL DEFAULT 0,
      description     TEXT NOT NULL DEFAULT '',
      start_time      TEXT NOT NULL,
      completion_time TEXT,
      bucket          TEXT,
      manifest_key    TEXT,
      consistency     TEXT,                    -- filesystem | crash | detached
      held_ms         REAL,                    -- how long the guest's I/O was held for the cut
      cut_ms          REAL,
      uploaded_bytes  INTEGER,
      state_message   TEXT,
      source_snapshot_id TEXT
    );
    CREATE INDEX snapshots_account ON snapshots (account_id);

    CREATE TABLE snapshot_permissions (
      snapshot_id  TEXT NOT NULL REFERENCES snapshots (snapshot_id) ON DELETE CASCADE,
      grantee      TEXT NOT NULL,              -- an account id, or 'all'
      PRIMARY KEY (snapshot_id, grantee)
    );
    CREATE INDEX snapshot_permissions_grantee ON snapshot_permissions (grantee);

    CREATE TABLE storage_deletions (
      kind   TEXT NOT NULL CHECK (kind IN ('volume', 'snapshot')),
      id     TEXT NOT NULL,
      zone   TEXT NOT NULL,
      PRIMARY KEY (kind, id)
    );
  `,
};

/** Migration 7: boot from EBS. An attachment may be an EBS-backed instance's root volume, deleted with it by default. */
export const bootVolumesMigration: Migration = {
  id: 7,
  name: 'boot volumes',
  up: `ALTER TABLE volume_attachments ADD COLUMN delete_on_termination INTEGER NOT NULL DEFAULT 0;`,
};

/**
 * Migration 8: CreateVolume's ClientToken (idempotent retries, as EC2). A token is the account's own and names
 * one volume while the volume exists.
 */
export const volumeClientTokenMigration: Migration = {
  id: 8,
  name: 'volume client tokens',
  up: `
    ALTER TABLE volumes ADD COLUMN client_token TEXT;
    ALTER TABLE volumes ADD COLUMN client_request TEXT;      -- the request's parameters, to refuse the token with others
    CREATE UNIQUE INDEX volumes_client_token ON volumes (account_id, client_token) WHERE client_token IS NOT NULL;
  `,
};
