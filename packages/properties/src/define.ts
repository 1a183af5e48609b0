// What a cloud property is: a dotted Eucalyptus-style name, a type, a default and a description.
// Values are stored and sent as strings (as Eucalyptus does) and parsed with the property's zod
// schema wherever they are used, so the clc and every reader agree on what a value means.
import { z } from 'zod';
import type { ConfigKey, MalleeConfig } from '@mallee/config';

export type PropertyType = 'integer' | 'number' | 'boolean' | 'string' | 'enum';

export interface PropertyDefinition<T = unknown> {
  readonly name: string;
  readonly type: PropertyType;
  readonly description: string;
  readonly default: T;
  readonly choices?: readonly string[];
  /** Also settable per availability zone as `<zone>.<name>` (Eucalyptus's partition properties, e.g. `mallee-1a.storage.maxvolumesizeingb`). */
  readonly perZone?: boolean;
  /**
   * The mallee.conf setting this property replaces: on the clc host (and in a reader that cannot
   * reach the clc) its value is the default until the property is set.
   */
  readonly conf?: { readonly key: ConfigKey; readonly map: (value: MalleeConfig[ConfigKey]) => T };
  /** Parses a value as stored or sent; throws PropertyValueError with a message for the user. */
  parse(text: string): T;
  format(value: T): string;
}

export class PropertyValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PropertyValueError';
  }
}

/** `cloud.vmstate.terminated_time`: lower-case dotted words, as Eucalyptus names them. */
export const PROPERTY_NAME = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$/;

interface Common<T> {
  name: string;
  description: string;
  default: T;
  perZone?: boolean;
  conf?: { key: ConfigKey; map?: (value: never) => T };
}

function build<T>(o: Common<T>, type: PropertyType, schema: z.ZodType<T>, format: (v: T) => string, choices?: readonly string[]): PropertyDefinition<T> {
  if (!PROPERTY_NAME.test(o.name)) throw new TypeError(`property name ${o.name} is not a dotted lower-case name`);
  const parse = (text: string): T => {
    const r = schema.safeParse(text);
    if (!r.success) throw new PropertyValueError(`${o.name}: ${JSON.stringify(text)} is not valid: ${r.error.issues.map((i) => i.message).join('; ')}`);
    return r.data;
  };
  parse(format(o.default)); // a default its own type refuses is a bug in the catalogue
  const conf = o.conf && { key: o.conf.key, map: (o.conf.map ?? ((v: unknown) => parse(String(v)))) as (value: MalleeConfig[ConfigKey]) => T };
  return {
    name: o.name,
    type,
    description: o.description,
    default: o.default,
    ...(choices ? { choices } : {}),
    ...(o.perZone ? { perZone: true } : {}),
    ...(conf ? { conf } : {}),
    parse,
    format,
  };
}

const trimmed = z.string().trim();

export function integerProperty(o: Common<number> & { min?: number; max?: number }): PropertyDefinition<number> {
  const n = z.number().int().min(o.min ?? Number.MIN_SAFE_INTEGER, `at least ${o.min}`).max(o.max ?? Number.MAX_SAFE_INTEGER, `at most ${o.max}`);
  return build(o, 'integer', trimmed.regex(/^-?\d+$/, 'an integer').transform(Number).pipe(n), String);
}

export function numberProperty(o: Common<number> & { min?: number; max?: number }): PropertyDefinition<number> {
  const n = z.number().min(o.min ?? -Number.MAX_VALUE, `at least ${o.min}`).max(o.max ?? Number.MAX_VALUE, `at most ${o.max}`);
  return build(o, 'number', trimmed.regex(/^-?(\d+\.?\d*|\.\d+)$/, 'a number').transform(Number).pipe(n), String);
}

export function booleanProperty(o: Common<boolean>): PropertyDefinition<boolean> {
  return build(o, 'boolean', trimmed.toLowerCase().pipe(z.enum(['true', 'false'], 'true or false')).transform((v) => v === 'true'), String);
}

export function stringProperty(o: Common<string> & { pattern?: RegExp; patternHint?: string; maxLength?: number }): PropertyDefinition<string> {
  let s = z.string().max(o.maxLength ?? 1024, `at most ${o.maxLength ?? 1024} characters`);
  if (o.pattern) s = s.regex(o.pattern, o.patternHint ?? `matching ${o.pattern}`);
  return build(o, 'string', s, (v) => v);
}

export function enumProperty<C extends string>(o: Common<C> & { choices: readonly [C, ...C[]] }): PropertyDefinition<C> {
  return build(o, 'enum', trimmed.pipe(z.enum(o.choices, `one of ${o.choices.join(', ')}`)) as unknown as z.ZodType<C>, (v) => v, o.choices);
}

/** The default that applies on a host with this mallee.conf: the conf setting it replaces, else the built-in one. */
export function defaultFor<T>(def: PropertyDefinition<T>, config?: MalleeConfig): { value: T; source: 'mallee.conf' | 'default' } {
  if (def.conf && config) {
    try {
      const value = def.conf.map(config[def.conf.key]);
      return { value, source: def.format(value) === def.format(def.default) ? 'default' : 'mallee.conf' };
    } catch {
      // a conf value the property refuses does not stop anything: the built-in default applies
    }
  }
  return { value: def.default, source: 'default' };
}
