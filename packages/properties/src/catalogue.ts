// Every cloud property Mallee knows, one file per area under catalogue/ (add yours there and list it here).
import type { PropertyDefinition } from './define.js';
import { cloudProperties } from './catalogue/cloud.js';
import { clusterProperties } from './catalogue/cluster.js';
import { storageProperties } from './catalogue/storage.js';
import { walrusProperties } from './catalogue/walrus.js';

export { cloudProperties, clusterProperties, storageProperties, walrusProperties };

export const PROPERTIES: readonly PropertyDefinition[] = [
  ...Object.values(cloudProperties),
  ...Object.values(clusterProperties),
  ...Object.values(storageProperties),
  ...Object.values(walrusProperties),
].sort((a, b) => a.name.localeCompare(b.name)) as PropertyDefinition[];

const byName = new Map(PROPERTIES.map((p) => [p.name, p]));
if (byName.size !== PROPERTIES.length) throw new Error('two cloud properties share a name');

export function findProperty(name: string): PropertyDefinition | undefined {
  return byName.get(name);
}

/** `storage.x` → that property; `<zone>.storage.x` → it with the zone, when it is a per-zone one. */
export function resolvePropertyName(name: string): { def: PropertyDefinition; zone?: string } | undefined {
  const def = byName.get(name);
  if (def) return { def };
  const dot = name.indexOf('.');
  if (dot <= 0) return undefined;
  const scoped = byName.get(name.slice(dot + 1));
  return scoped?.perZone ? { def: scoped, zone: name.slice(0, dot) } : undefined;
}
