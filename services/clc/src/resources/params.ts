// Query-parameter shapes shared by this module's actions, and the binding of actions to a database.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, q, type ActionContext, type Ec2Action, type Ec2Result, type Principal } from '@mallee/aws-protocol';

/** A `.N` list; absent → [], and a lone un-numbered value (`KeyName=x`) counts as a list of one. */
export const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (v === undefined ? [] : Array.isArray(v) ? v.filter((x) => x !== undefined) : [v]), z.array(item));

/** An optional integer parameter. */
export const optInt = () => q.int().optional();

/** What a bundle's manifest says about its image, once checked (RegisterImage). */
export interface ManifestCheck {
  imageType: 'machine' | 'kernel' | 'ramdisk';
  architecture: string;
  kernelId?: string;
  ramdiskId?: string;
  /** Called inside the transaction that records the image (to keep what the check learnt). */
  record?(db: Db, imageId: string): void;
}

/** Reads and verifies the manifest at bucket/key for this principal, or throws the EC2 error to answer. */
export type CheckManifest = (principal: Principal, bucket: string, manifestKey: string) => Promise<ManifestCheck>;

/** What this module needs from the rest of the clc: the image store's manifest check (Walrus). */
export interface ResourceHooks {
  checkManifest: CheckManifest;
  /** Told of every deregistered image (the image store may drop its cached copy). */
  deregistered?(image: { imageId: string; location: string }): void;
  /**
   * The snapshot an EBS-backed image boots from, if the principal may create volumes from it (EBS, in storage/):
   * its size, or the EC2 error to answer (InvalidSnapshot.NotFound, IncorrectState).
   */
  rootSnapshot?(principal: Principal, snapshotId: string): { volumeSize: number };
}

export const noImageStore: ResourceHooks = {
  checkManifest: () => {
    throw new Ec2Error('InvalidManifest', 'This cloud has no Walrus to read manifests from: register one with `mallee register-walrus URL`.');
  },
};

/** An action over the clc database: `bind` makes the Ec2Action for a given source of that database. */
export type ResourceAction = (db: () => Db, hooks: ResourceHooks) => Ec2Action;

export function resourceAction<S extends z.ZodType>(
  name: string,
  input: S,
  impl: (db: Db, input: z.infer<S>, ctx: ActionContext, hooks: ResourceHooks) => Ec2Result | Promise<Ec2Result>,
): ResourceAction {
  return (db, hooks) => defineEc2Action(name, input, (i, ctx) => impl(db(), i, ctx, hooks)) as Ec2Action;
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
