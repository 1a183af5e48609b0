// Query-parameter shapes shared by this module's actions, and the binding of actions to a database.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, q, type ActionContext, type Ec2Action, type Ec2Result } from '@mallee/aws-protocol';

/** A `.N` list; absent → [], and a lone un-numbered value (`KeyName=x`) counts as a list of one. */
export const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (v === undefined ? [] : Array.isArray(v) ? v.filter((x) => x !== undefined) : [v]), z.array(item));

/** An optional integer parameter. */
export const optInt = () => q.int().optional();

/** An action over the clc database: `bind` makes the Ec2Action for a given source of that database. */
export type ResourceAction = (db: () => Db) => Ec2Action;

export function resourceAction<S extends z.ZodType>(
  name: string,
  input: S,
  impl: (db: Db, input: z.infer<S>, ctx: ActionContext) => Ec2Result | Promise<Ec2Result>,
): ResourceAction {
  return (db) => defineEc2Action(name, input, (i, ctx) => impl(db(), i, ctx)) as Ec2Action;
}

let bound: Db | undefined;

/** Binds `resourceActions` to the clc database (once, at daemon start); `resourceActionsFor(db)` needs no binding. */
export function bindResourcesDatabase(db: Db | undefined): void {
  bound = db;
}

export function boundDatabase(): Db {
  if (!bound) throw new Ec2Error('InternalError', 'resources: bindResourcesDatabase(db) was not called at startup');
  return bound;
}
