// The cloud properties store (`mallee property`): values the admin set, in clc.sqlite (migration 3);
// a property never set has its default (the clc host's mallee.conf setting it replaces, else the
// built-in one). Served to the CLI and, filtered, to the other daemons (DescribeProperties).
import type { MalleeConfig } from '@mallee/config';
import type { Db, Migration } from '@mallee/store';
import { PROPERTIES, PropertyValueError, defaultFor, resolvePropertyName, type PropertyDefinition } from '@mallee/properties';
import { WireError, type properties as ops } from '@mallee/wire';

export const propertiesMigration: Migration = {
  id: 3,
  name: 'properties',
  up: `
    -- Cloud properties the admin set; a name absent here has its default. A zone's own value of a
    -- per-zone property is stored under <zone>.<name>.
    CREATE TABLE properties (
      name        TEXT PRIMARY KEY,
      value       TEXT NOT NULL,
      updated_at  TEXT NOT NULL
    );
  `,
};

type PropertyValue = ops.PropertyValue;

export interface CloudPropertiesOptions {
  /** Zones (registered clusters) a per-zone property may be set for. */
  zones: () => string[];
  /** Checks against the clc's own data (e.g. that an instance type exists); returns why a value is refused. */
  checks?: Record<string, (value: unknown) => string | undefined>;
}

type Listener = (name: string) => void;

export class CloudProperties {
  private readonly set_ = new Map<string, { value: string; updatedAt: string }>();
  private readonly listeners: Listener[] = [];

  constructor(private readonly db: Db, private readonly config: MalleeConfig, private readonly o: CloudPropertiesOptions) {
    for (const r of db.prepare('SELECT name, value, updated_at FROM properties').all() as { name: string; value: string; updated_at: string }[]) {
      this.set_.set(r.name, { value: r.value, updatedAt: r.updated_at });
    }
  }

  /** The value that applies (in `zone`, for a per-zone property). */
  get<T>(def: PropertyDefinition<T>, zone?: string): T {
    return def.parse(this.current(def, zone).value);
  }

  /** Called with the property's name (without zone) after each change. */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  describe(req: { prefix?: string; names?: string[]; zone?: string }): PropertyValue[] {
    const out: PropertyValue[] = [];
    const wanted = req.names && new Set(req.names);
    const include = (name: string) => (wanted ? wanted.has(name) : !req.prefix || name.startsWith(req.prefix));
    for (const def of PROPERTIES) {
      if (include(def.name)) out.push(this.view(def, req.zone));
      if (def.perZone && req.zone === undefined) {
        for (const name of this.set_.keys()) {
          const r = resolvePropertyName(name);
          if (r?.zone && r.def === def && (include(name) || include(def.name))) out.push(this.view(def, r.zone, true));
        }
      }
    }
    return out;
  }

  /** Sets (or with value undefined, resets) a property; the value is checked against its type first. */
  modify(name: string, value: string | undefined): { name: string; oldValue: string; value: string; source: PropertyValue['source'] } {
    const r = resolvePropertyName(name);
    if (!r) throw new WireError('NoSuchEntity', `no property named ${name}; \`mallee property\` lists them${this.hint(name)}`, 404);
    const { def, zone } = r;
    if (zone !== undefined && !this.o.zones().includes(zone)) {
      throw new WireError('InvalidParameterValue', `${name}: no availability zone named ${zone} (zones: ${this.o.zones().join(', ') || 'none registered'})`);
    }
    const old = this.current(def, zone).value;
    if (value === undefined) {
      this.db.prepare('DELETE FROM properties WHERE name = ?').run(name);
      this.set_.delete(name);
    } else {
      let parsed: unknown;
      try {
        parsed = def.parse(value);
      } catch (err) {
        if (err instanceof PropertyValueError) throw new WireError('InvalidParameterValue', `${err.message}${describeType(def)}`);
        throw err;
      }
      const refused = this.o.checks?.[def.name]?.(parsed);
      if (refused) throw new WireError('InvalidParameterValue', `${name}: ${refused}`);
      const text = def.format(parsed);
      const updatedAt = new Date().toISOString();
      this.db.prepare('INSERT INTO properties (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at')
        .run(name, text, updatedAt);
      this.set_.set(name, { value: text, updatedAt });
    }
    for (const l of this.listeners) l(def.name);
    const now = this.current(def, zone);
    return { name, oldValue: old, value: now.value, source: now.source };
  }

  private current(def: PropertyDefinition, zone?: string): { value: string; source: PropertyValue['source']; updatedAt?: string } {
    const own = zone !== undefined && def.perZone ? this.set_.get(`${zone}.${def.name}`) : undefined;
    const set = own ?? this.set_.get(def.name);
    if (set) {
      try {
        def.parse(set.value);
        return { value: set.value, source: 'set', updatedAt: set.updatedAt };
      } catch {
        // stored by a build whose type for it differed: the default applies until it is set again
      }
    }
    const d = defaultFor(def, this.config);
    return { value: def.format(d.value), source: d.source };
  }

  private view(def: PropertyDefinition, zone?: string, zoneEntry = false): PropertyValue {
    const cur = this.current(def, zone);
    return {
      name: zoneEntry ? `${zone}.${def.name}` : def.name,
      value: cur.value,
      type: def.type,
      defaultValue: def.format(defaultFor(def, this.config).value),
      description: def.description,
      source: cur.source,
      ...(def.choices ? { choices: [...def.choices] } : {}),
      ...(zoneEntry ? { zone } : {}),
      ...(def.perZone ? { perZone: true } : {}),
      ...(cur.updatedAt ? { updatedAt: cur.updatedAt } : {}),
    };
  }

  private hint(name: string): string {
    const near = PROPERTIES.filter((p) => p.name.split('.').pop() === name.split('.').pop() || p.name.startsWith(name)).map((p) => p.name);
    return near.length ? ` (did you mean ${near.slice(0, 3).join(', ')}?)` : '';
  }
}

function describeType(def: PropertyDefinition): string {
  return def.choices ? '' : ` (${def.type}, default ${def.format(def.default)})`;
}
