// Migration 2: the tables of key pairs, security groups and their rules, images and their launch
// permissions, and tags. Migration 1 is the core's (accounts, instances, …); no foreign keys point
// into it, so the two modules' schemas evolve independently.
import type { Migration } from '@mallee/store';

export const resourcesMigration: Migration = {
  id: 2,
  name: 'resources',
  up: `
    CREATE TABLE key_pairs (
      account_id   TEXT NOT NULL,
      name         TEXT NOT NULL,
      key_pair_id  TEXT NOT NULL UNIQUE,
      key_type     TEXT NOT NULL,
      fingerprint  TEXT NOT NULL,
      public_key   TEXT NOT NULL,            -- OpenSSH line: "ssh-rsa AAAA… name"
      created_at   TEXT NOT NULL,
      PRIMARY KEY (account_id, name)
    );

    CREATE TABLE security_groups (
      group_id     TEXT PRIMARY KEY,
      account_id   TEXT NOT NULL,
      name         TEXT NOT NULL,
      description  TEXT NOT NULL,
      created_at   TEXT NOT NULL,
      UNIQUE (account_id, name)
    );

    -- One row per (protocol, port range, single peer); Describe groups them back into IpPermissions.
    -- protocol: 'tcp' | 'udp' | 'icmp' | '-1' | an IP protocol number; ports NULL when not applicable.
    -- Peer: cidr, or a source group (source_group_id, with its owner and name as EC2-Classic names it).
    CREATE TABLE security_group_rules (
      rule_id            INTEGER PRIMARY KEY AUTOINCREMENT,
      group_id           TEXT NOT NULL REFERENCES security_groups(group_id) ON DELETE CASCADE,
      protocol           TEXT NOT NULL,
      from_port          INTEGER,
      to_port            INTEGER,
      cidr               TEXT,
      source_group_id    TEXT REFERENCES security_groups(group_id),
      CHECK ((cidr IS NULL) <> (source_group_id IS NULL))
    );
    CREATE UNIQUE INDEX security_group_rules_unique ON security_group_rules
      (group_id, protocol, IFNULL(from_port, -2), IFNULL(to_port, -2), IFNULL(cidr, ''), IFNULL(source_group_id, ''));
    CREATE INDEX security_group_rules_source ON security_group_rules (source_group_id);

    CREATE TABLE images (
      image_id             TEXT PRIMARY KEY,
      owner_id             TEXT NOT NULL,
      name                 TEXT NOT NULL,
      description          TEXT,
      location             TEXT NOT NULL,
      image_type           TEXT NOT NULL CHECK (image_type IN ('machine', 'kernel', 'ramdisk')),
      architecture         TEXT NOT NULL,
      state                TEXT NOT NULL,
      is_public            INTEGER NOT NULL DEFAULT 0,
      kernel_id            TEXT,
      ramdisk_id           TEXT,
      platform             TEXT,
      root_device_type     TEXT NOT NULL,
      root_device_name     TEXT,
      virtualization_type  TEXT NOT NULL,
      block_device_mappings TEXT NOT NULL DEFAULT '[]',  -- JSON, as registered
      created_at           TEXT NOT NULL
    );
    CREATE UNIQUE INDEX images_owner_name ON images (owner_id, name);
    CREATE INDEX images_public ON images (is_public) WHERE is_public = 1;

    CREATE TABLE image_launch_permissions (
      image_id    TEXT NOT NULL REFERENCES images(image_id) ON DELETE CASCADE,
      account_id  TEXT NOT NULL,
      PRIMARY KEY (image_id, account_id)
    );
    CREATE INDEX image_launch_permissions_account ON image_launch_permissions (account_id);

    CREATE TABLE tags (
      resource_id    TEXT NOT NULL,
      resource_type  TEXT NOT NULL,
      account_id     TEXT NOT NULL,
      key            TEXT NOT NULL,
      value          TEXT NOT NULL,
      PRIMARY KEY (resource_id, key)
    );
    CREATE INDEX tags_account ON tags (account_id, resource_type);
  `,
};
