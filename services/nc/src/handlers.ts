// The nc.* wire operation table: each operation maps to one NodeController method.
import { handler, mapTargetSecret, nc, openSecret, type WireHandler } from '@mallee/wire';
import type { NodeController } from './node-controller.js';

/** Only the cluster controller that registered this node talks to it. */
export const NC_CALLER = 'cc';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function ncHandlers(node: NodeController, nodeKey: () => string | undefined = () => undefined): WireHandler<any, any>[] {
  return [
    handler(nc.ncRunInstance, async (spec) => ({ instance: await node.runInstance(spec) })),
    handler(nc.ncTerminateInstance, (req) => node.terminateInstance(req.instanceId, req.force)),
    handler(nc.ncRebootInstance, async (req) => {
      await node.rebootInstance(req.instanceId);
      return {};
    }),
    handler(nc.ncDescribeInstances, async (req) => ({ instances: await node.describeInstances(req.instanceIds) })),
    handler(nc.ncDescribeResource, () => node.describeResource()),
    handler(nc.ncGetConsoleOutput, async (req) => ({
      instanceId: req.instanceId,
      output: await node.consoleOutput(req.instanceId),
      timestamp: new Date().toISOString(),
    })),
    // --- volumes (sc): the CHAP secret arrives sealed with this node's key.
    handler(nc.ncAttachVolume, async (req) => ({
      volume: await node.attachVolume(req.instanceId, { volumeId: req.volumeId, device: req.device, target: mapTargetSecret(req.target, (sealed) => openSecret(nodeKey() ?? '', sealed)) }),
    })),
    handler(nc.ncDetachVolume, async (req) => ({ detached: await node.detachVolume(req.instanceId, req.volumeId, req.force) })),
    handler(nc.ncFreezeInstance, (req) => node.freezeInstance(req.instanceId, req.timeoutMs)),
    handler(nc.ncThawInstance, (req) => node.thawInstance(req.instanceId)),
    // --- live migration (issue 7): the volumes' CHAP secrets arrive sealed with this node's key.
    handler(nc.ncMigrationSource, (req) => node.migrationSource(req.instanceId)),
    handler(nc.ncPrepareMigration, async (req) => ({
      destination: await node.prepareMigration(req.spec, req.launchTime, req.volumes.map((v) => ({ ...v, target: mapTargetSecret(v.target, (sealed) => openSecret(nodeKey() ?? '', sealed)) }))),
    })),
    handler(nc.ncMigrateInstance, async (req) => ({ instanceId: req.instanceId, ...(await node.migrateInstance(req.instanceId, req)) })),
    handler(nc.ncFinishMigration, async (req) => {
      const instance = await node.finishMigration(req.instanceId, req.succeeded, req.console);
      return instance ? { instance } : {};
    }),
  ];
}
