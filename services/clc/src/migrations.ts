// The clc's schema: migration 1 (accounts, clusters, instance types, reservations, instances) is the
// core's; migration 2 is the resources module's (key pairs, groups, images, tags); 3 the cloud properties; 6 networking; 5, 7 and 8 EBS. No foreign keys
// cross between the two, so each evolves on its own.
import type { Migration } from '@mallee/store';
import { networkMigration } from './network/index.js';
import { propertiesMigration } from './properties.js';
import { resourcesMigration } from './resources/index.js';
import { bootVolumesMigration, storageMigration, volumeClientTokenMigration } from './storage/index.js';

export const coreMigration: Migration = {
  id: 1,
  name: 'core',
  up: `
    CREATE TABLE accounts (
      account_id   TEXT PRIMARY KEY,          -- 12 digits, as AWS/Eucalyptus account numbers
      name         TEXT NOT NULL UNIQUE,
      is_admin     INTEGER NOT NULL DEFAULT 0,
      created_at   TEXT NOT NULL
    );

    CREATE TABLE users (
      user_id      TEXT PRIMARY KEY,
      account_id   TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
      name         TEXT NOT NULL,
      created_at   TEXT NOT NULL,
      UNIQUE (account_id, name)
    );

    CREATE TABLE access_keys (
      access_key_id      TEXT PRIMARY KEY,
      secret_access_key  TEXT NOT NULL,
      user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
      active             INTEGER NOT NULL DEFAULT 1,
      created_at         TEXT NOT NULL
    );
    CREATE INDEX access_keys_user ON access_keys (user_id);

    -- A registered Cluster Controller; its name is the availability zone it serves.
    CREATE TABLE clusters (
      name          TEXT PRIMARY KEY,
      url           TEXT NOT NULL,
      wire_key      TEXT NOT NULL,             -- the key the clc signs with (the cc's keys/cloud.key)
      state         TEXT NOT NULL DEFAULT 'NOTREADY',
      detail        TEXT,
      last_contact  TEXT,
      registered_at TEXT NOT NULL
    );

    CREATE TABLE instance_types (
      name        TEXT PRIMARY KEY,
      position    INTEGER NOT NULL,            -- listing order (smallest first, as Eucalyptus lists them)
      cpu         INTEGER NOT NULL,
      memory_mib  INTEGER NOT NULL,
      disk_gib    INTEGER NOT NULL
    );

    CREATE TABLE reservations (
      reservation_id  TEXT PRIMARY KEY,
      account_id      TEXT NOT NULL,
      client_token    TEXT,
      created_at      TEXT NOT NULL
    );
    CREATE UNIQUE INDEX reservations_client_token ON reservations (account_id, client_token) WHERE client_token IS NOT NULL;

    CREATE TABLE instances (
      instance_id          TEXT PRIMARY KEY,
      account_id           TEXT NOT NULL,
      reservation_id       TEXT NOT NULL REFERENCES reservations(reservation_id),
      launch_index         INTEGER NOT NULL,
      zone                 TEXT NOT NULL,
      image_id             TEXT NOT NULL,
      image_location       TEXT NOT NULL DEFAULT '',
      kernel_id            TEXT,
      ramdisk_id           TEXT,
      architecture         TEXT NOT NULL DEFAULT 'x86_64',
      platform             TEXT,
      root_device_type     TEXT NOT NULL DEFAULT 'instance-store',
      root_device_name     TEXT,
      virtualization_type  TEXT NOT NULL DEFAULT 'paravirtual',
      instance_type        TEXT NOT NULL,
      vm_cpu               INTEGER NOT NULL,      -- the type's resources at launch (admins may edit types later)
      vm_memory_mib        INTEGER NOT NULL,
      vm_disk_gib          INTEGER NOT NULL,
      key_name             TEXT,
      public_key           TEXT,
      user_data            TEXT,                  -- base64, as sent
      state                TEXT NOT NULL,
      state_reason         TEXT,
      state_changed_at     TEXT NOT NULL,
      reported             INTEGER NOT NULL DEFAULT 0,  -- the cc has reported it at least once
      node                 TEXT,
      private_ip           TEXT,
      public_ip            TEXT,
      mac_address          TEXT,
      launch_time          TEXT NOT NULL,
      terminated_at        TEXT
    );
    CREATE INDEX instances_account ON instances (account_id, state);
    CREATE INDEX instances_zone_state ON instances (zone, state);
    CREATE INDEX instances_reservation ON instances (reservation_id);
    CREATE INDEX instances_terminated ON instances (terminated_at) WHERE terminated_at IS NOT NULL;

    -- Security groups an instance was launched in (ids and names as they were at launch).
    CREATE TABLE instance_groups (
      instance_id  TEXT NOT NULL REFERENCES instances(instance_id) ON DELETE CASCADE,
      position     INTEGER NOT NULL,
      group_id     TEXT NOT NULL,
      group_name   TEXT NOT NULL,
      PRIMARY KEY (instance_id, group_id)
    );
    CREATE INDEX instance_groups_group ON instance_groups (group_id);
  `,
};

/**
 * Migration 4: the registered Walrus (its URL and the link key), users' X.509 certificates (which
 * may sign bundles), and what Walrus verified about each registered bundle (its decrypted image's
 * size and SHA-256, which NCs check what they download against).
 */
export const walrusMigration: Migration = {
  id: 4,
  name: 'walrus, certificates, image bundles',
  up: `
    CREATE TABLE walrus (
      name          TEXT PRIMARY KEY,          -- 'walrus': one per cloud, as in Eucalyptus 2
      url           TEXT NOT NULL,
      wire_key      TEXT NOT NULL,             -- the link key (Walrus's keys/walrus.key), both directions
      registered_at TEXT NOT NULL
    );

    CREATE TABLE certificates (
      certificate_id TEXT PRIMARY KEY,
      user_id        TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
      pem            TEXT NOT NULL,
      fingerprint    TEXT NOT NULL UNIQUE,     -- SHA-256 of the DER
      active         INTEGER NOT NULL DEFAULT 1,
      created_at     TEXT NOT NULL
    );
    CREATE INDEX certificates_user ON certificates (user_id);

    CREATE TABLE image_bundles (
      image_id      TEXT PRIMARY KEY REFERENCES images(image_id) ON DELETE CASCADE,
      bucket        TEXT NOT NULL,
      manifest_key  TEXT NOT NULL,
      image_bytes   INTEGER NOT NULL,
      image_sha256  TEXT NOT NULL,
      bundled_bytes INTEGER NOT NULL,
      signed_by     TEXT NOT NULL,
      checked_at    TEXT NOT NULL
    );
  `,
};

/**
 * Launches RunInstances gave up on (their rows deleted): a cc that was unreachable when the clc told it to drop them
 * may still have started them, and the cluster poller terminates one it finds running.
 */
export const discardedLaunchesMigration: Migration = {
  id: 9,
  name: 'discarded launches',
  up: `
    CREATE TABLE discarded_launches (
      instance_id  TEXT PRIMARY KEY,
      zone         TEXT NOT NULL,
      discarded_at TEXT NOT NULL
    );
  `,
};

/** Every migration of the clc database, in order. */
export const clcMigrations: Migration[] = [coreMigration, resourcesMigration, propertiesMigration, walrusMigration, storageMigration, networkMigration, bootVolumesMigration, volumeClientTokenMigration, discardedLaunchesMigration];
