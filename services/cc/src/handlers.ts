// The cc.* wire operation table: each operation maps to one Cluster method.
import { cc, handler, type WireHandler } from '@mallee/wire';
import type { Cluster } from './cluster.js';
import type { NetworkManager } from './net/manager.js';
import type { ClusterVolumes } from './volumes.js';

/** Only the cloud controller that registered this cluster talks to it. */
export const CC_CALLER = 'clc';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function ccHandlers(cluster: Cluster, volumes?: ClusterVolumes, network?: NetworkManager): WireHandler<any, any>[] {
  return [
    handler(cc.RunInstances, (req) => cluster.runInstances(req)),
    handler(cc.PlaceInstances, (req) => cluster.placeInstances(req)),
    handler(cc.TerminateInstances, (req) => cluster.terminateInstances(req)),
    handler(cc.RebootInstances, (req) => cluster.rebootInstances(req)),
    handler(cc.GetConsoleOutput, (req) => cluster.getConsoleOutput(req)),
    handler(cc.DescribeInstances, (req) => cluster.describeInstances(req)),
    handler(cc.DescribeResources, (req) => cluster.describeResources(req)),
    handler(cc.RegisterNode, (req) => cluster.registerNode(req.node, req.url)),
    handler(cc.DeregisterNode, (req) => {
      cluster.deregisterNode(req.node);
      return {};
    }),
    handler(cc.DescribeNodes, () => cluster.describeNodes()),
    handler(cc.MigrateInstance, (req) => cluster.migrateInstance(req)),
    // networking (issue 6)
    ...(network
      ? [
          handler(cc.StartNetwork, (req) => network.startNetwork(req)),
          handler(cc.ConfigureNetwork, (req) => network.configure(req)),
          handler(cc.AssignAddress, async (req) => (await network.assign(req), {})),
          handler(cc.UnassignAddress, async (req) => (await network.unassign(req.publicIp), {})),
        ]
      : []),
    // --- volumes (sc)
    ...(volumes
      ? [
          handler(cc.AttachVolume, (req) => volumes.attachVolume(req)),
          handler(cc.DetachVolume, (req) => volumes.detachVolume(req)),
          handler(cc.FreezeInstance, (req) => volumes.freezeInstance(req)),
          handler(cc.ThawInstance, (req) => volumes.thawInstance(req)),
        ]
      : []),
  ];
}
