// Instance types (Eucalyptus "vm types"): cpu, memory and disk per type, editable by the cloud admin
// (euca-modify-instance-type; the seed set m1.small to 256 MiB). Seeded at first start.
import type { Db } from '@mallee/store';
import type { VmType } from '@mallee/wire';

export interface InstanceType { name: string; cpu: number; memoryMiB: number; diskGiB: number }

/** The defaults, smallest first (cpu, MiB, GiB), as a Eucalyptus 3 cloud ships them. */
export const DEFAULT_INSTANCE_TYPES: readonly InstanceType[] = [
  { name: 't1.micro', cpu: 1, memoryMiB: 256, diskGiB: 5 },
  { name: 'm1.small', cpu: 1, memoryMiB: 512, diskGiB: 5 },
  { name: 'm1.medium', cpu: 1, memoryMiB: 1024, diskGiB: 10 },
  { name: 'c1.medium', cpu: 2, memoryMiB: 512, diskGiB: 10 },
  { name: 'm1.large', cpu: 2, memoryMiB: 1024, diskGiB: 10 },
  { name: 'm1.xlarge', cpu: 2, memoryMiB: 2048, diskGiB: 10 },
  { name: 'c1.xlarge', cpu: 4, memoryMiB: 2048, diskGiB: 10 },
];

interface TypeRow { name: string; cpu: number; memory_mib: number; disk_gib: number }
const toType = (r: TypeRow): InstanceType => ({ name: r.name, cpu: r.cpu, memoryMiB: r.memory_mib, diskGiB: r.disk_gib });

/** Adds the default types that are missing (never overwrites an admin's edits). */
export function seedInstanceTypes(db: Db): void {
  const insert = db.prepare('INSERT INTO instance_types (name, position, cpu, memory_mib, disk_gib) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING');
  db.transaction(() => DEFAULT_INSTANCE_TYPES.forEach((t, i) => insert.run(t.name, i, t.cpu, t.memoryMiB, t.diskGiB)))();
}

export function listInstanceTypes(db: Db): InstanceType[] {
  return (db.prepare('SELECT * FROM instance_types ORDER BY position, name').all() as TypeRow[]).map(toType);
}

export function findInstanceType(db: Db, name: string): InstanceType | undefined {
  const row = db.prepare('SELECT * FROM instance_types WHERE name = ?').get(name) as TypeRow | undefined;
  return row && toType(row);
}

export function updateInstanceType(db: Db, name: string, change: Partial<Omit<InstanceType, 'name'>>): InstanceType {
  db.prepare(`UPDATE instance_types SET cpu = COALESCE(@cpu, cpu), memory_mib = COALESCE(@memoryMiB, memory_mib),
    disk_gib = COALESCE(@diskGiB, disk_gib) WHERE name = @name`)
    .run({ name, cpu: change.cpu ?? null, memoryMiB: change.memoryMiB ?? null, diskGiB: change.diskGiB ?? null });
  return findInstanceType(db, name)!;
}

/** Back to the shipped default (types without a default keep their values). */
export function resetInstanceType(db: Db, name: string): InstanceType {
  const d = DEFAULT_INSTANCE_TYPES.find((t) => t.name === name);
  return d ? updateInstanceType(db, name, d) : findInstanceType(db, name)!;
}

export function vmTypeOf(t: InstanceType): VmType {
  return { name: t.name, cores: t.cpu, memoryMiB: t.memoryMiB, diskGiB: t.diskGiB };
}
