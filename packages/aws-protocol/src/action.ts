// One declarative description per EC2 action: its name, a zod schema over the nested Query
// parameters (`InstanceId.N` arrives as InstanceId: string[], `Filter.N.Value.M` as
// Filter: {Name, Value: string[]}[]), and a handler from typed input to a plain result object
// whose keys are the EC2 XML element names (arrays become <item> lists).
import { z } from 'zod';
import type { FastifyBaseLogger } from 'fastify';

/** Who signed the request. */
export interface Principal {
  accountId: string;
  accountName: string;
  userId: string;
  accessKeyId: string;
  /** Member of the cloud's admin ("eucalyptus") account: may see every account's resources. */
  isAdmin: boolean;
}

export interface ActionContext {
  principal: Principal;
  requestId: string;
  /** API version the client asked for (2009-11-30 … 2016-11-15); the response uses its namespace. */
  apiVersion: string;
  log: FastifyBaseLogger;
}

/** A plain result: element name → value (string, number, boolean, Date, nested object, array of items). */
export type Ec2Result = Record<string, unknown>;

export interface Ec2Action<I = unknown> {
  readonly name: string;
  readonly input: z.ZodType<I>;
  readonly handler: (input: I, ctx: ActionContext) => Promise<Ec2Result> | Ec2Result;
}

export function defineEc2Action<S extends z.ZodType>(
  name: string,
  input: S,
  handler: (input: z.infer<S>, ctx: ActionContext) => Promise<Ec2Result> | Ec2Result,
): Ec2Action<z.infer<S>> {
  return { name, input: input as z.ZodType<z.infer<S>>, handler };
}

/** Resolves an access key id to its secret and principal; undefined for an unknown or inactive key. */
export type CredentialLookup = (accessKeyId: string) => Promise<{ secretAccessKey: string; principal: Principal } | undefined> | { secretAccessKey: string; principal: Principal } | undefined;

// Query parameters are strings; these read them into typed values with AWS-style messages.
const intFrom = (s: string) => (/^-?\d+$/.test(s.trim()) ? Number(s) : NaN);

export const q = {
  string: () => z.string(),
  /** An integer parameter (e.g. MinCount); "abc" fails as InvalidParameterValue. */
  int: () => z.string().transform((s, ctx) => {
    const n = intFrom(s);
    if (!Number.isSafeInteger(n)) ctx.addIssue({ code: 'custom', message: `Invalid integer value ${s}` });
    return n;
  }),
  /** "true"/"false" (any case). */
  bool: () => z.string().transform((s, ctx) => {
    const v = s.trim().toLowerCase();
    if (v !== 'true' && v !== 'false') ctx.addIssue({ code: 'custom', message: `Invalid boolean value ${s}` });
    return v === 'true';
  }),
  /** A `.N` list; absent means []. */
  list: <T extends z.ZodType>(item: T) => z.array(item).default([]),
  /** `Filter.N.Name` / `Filter.N.Value.M`. */
  filters: () => z.array(z.object({ Name: z.string(), Value: z.array(z.string()).default([]) })).default([]),
};

export type Filter = { Name: string; Value: string[] };
