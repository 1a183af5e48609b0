// Migration 6: MANAGED networking's state in the clc (the source of truth the cc's rules are built
// from): the private network of each security group, the public addresses of each account, and the
// network an instance was placed in.
import type { Migration } from '@mallee/store';

export const networkMigration: Migration = {
  id: 6,
  name: 'network',
  up: `
    -- One private network per (account, security group): its index is the VLAN tag / VXLAN VNI.
    CREATE TABLE networks (
      group_id    TEXT PRIMARY KEY,
      account_id  TEXT NOT NULL,
      vlan        INTEGER NOT NULL UNIQUE,
      created_at  TEXT NOT NULL
    );

    -- Public addresses taken from VNET_PUBLICIPS: allocated to an account (elastic, or auto-assigned
    -- at launch), associated with at most one instance.
    CREATE TABLE addresses (
      public_ip       TEXT PRIMARY KEY,
      allocation_id   TEXT NOT NULL UNIQUE,
      account_id      TEXT NOT NULL,
      auto_assigned   INTEGER NOT NULL DEFAULT 0,
      instance_id     TEXT,
      association_id  TEXT UNIQUE,
      allocated_at    TEXT NOT NULL
    );
    CREATE INDEX addresses_account ON addresses (account_id);
    CREATE UNIQUE INDEX addresses_instance ON addresses (instance_id) WHERE instance_id IS NOT NULL;

    ALTER TABLE instances ADD COLUMN vlan INTEGER;
    ALTER TABLE instances ADD COLUMN private_dns_name TEXT;
    CREATE INDEX instances_vlan ON instances (vlan) WHERE vlan IS NOT NULL;
  `,
};
