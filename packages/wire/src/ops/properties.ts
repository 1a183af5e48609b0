// Cloud properties (`mallee property`), served by the clc: every daemon that has a key with the clc
// reads the ones that concern it (Walrus `walrus.*`, an SC `storage.*` for its zone, a cc `cluster.*` for its zone).
// Values travel as strings, as in Eucalyptus; @mallee/properties parses them with each property's type.
import { z } from 'zod';
import { defineOperation } from '../protocol.js';

/** Where a property's current value comes from: set by the admin, the clc host's mallee.conf, or the built-in default. */
export const propertySource = z.enum(['set', 'mallee.conf', 'default']);

export const propertyValue = z.object({
  /** Dotted Eucalyptus-style name; a zone's own value of a per-zone property is `<zone>.<name>`. */
  name: z.string(),
  value: z.string(),
  type: z.enum(['integer', 'number', 'boolean', 'string', 'enum']),
  defaultValue: z.string(),
  description: z.string(),
  source: propertySource,
  /** For enum properties: the allowed values. */
  choices: z.array(z.string()).optional(),
  /** Set for a per-zone property's zone value. */
  zone: z.string().optional(),
  perZone: z.boolean().optional(),
  updatedAt: z.string().optional(),
});
export type PropertyValue = z.infer<typeof propertyValue>;

/**
 * The properties whose names start with `prefix` (all without one), or exactly `names`. With `zone`,
 * per-zone properties come under their plain name with the value that applies in that zone.
 */
export const DescribeProperties = defineOperation(
  'DescribeProperties',
  z.object({ prefix: z.string().max(200).optional(), names: z.array(z.string().max(200)).max(500).optional(), zone: z.string().max(63).optional() }),
  z.object({ properties: z.array(propertyValue) }),
);
