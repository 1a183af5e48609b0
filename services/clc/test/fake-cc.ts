// A stand-in for a Cluster Controller, built with the real `wire` plugin: it serves the cc operations
// the clc calls from a table the test controls, and counts every call, so tests can make a cluster
// refuse, forget or duplicate things that a real cc would only do under failure.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Db } from '@mallee/store';
import { cc, handler, wire, WireError, generateKey, type AttachedVolume, type InstanceSpec, type InstanceStateName } from '@mallee/wire';
import { insertReservation, type NewInstance } from '../src/instances.js';

export interface FakeInstance { spec: InstanceSpec; state: InstanceStateName; node: string; stateReason?: string; nodeUnreachableSince?: string; /** hot-plugged volumes, as its node reports them */ volumes?: AttachedVolume[] }

export class FakeCc {
  readonly instances = new Map<string, FakeInstance>();
  readonly calls: { op: string; body: unknown }[] = [];
  /** How many more instances fit (per RunInstances, across types). */
  capacity = 100;
  /** Set to make every call fail as an unreachable cc would look to the clc's poller. */
  down = false;
  /** Awaited before DescribeInstances answers (a test's hook into the moment the clc asks). */
  beforeDescribe: (() => Promise<void>) | undefined;
  /** Set to make ThawInstance fail (the cc or node went away while the guest was held). */
  thawDown = false;
  /** Set to have the next RunInstances place its instances and then fail, the cc down from then (killed before it answered). */
  dieAfterPlacing = false;
  /** Volumes attached but not reported yet (the cc's view of its nodes lags behind them). */
  readonly unreported = new Set<string>();
  key = generateKey();
  url = '';
  private app: FastifyInstance | undefined;

  runCount(instanceId: string): number {
    return this.calls.filter((c) => c.op === 'RunInstances' && (c.body as { instances: InstanceSpec[] }).instances.some((i) => i.instanceId === instanceId)).length;
  }

  private record(op: string, body: unknown): void {
    this.calls.push({ op, body });
    if (this.down) throw new WireError('ServiceUnavailable', 'fake cc is down', 503);
  }

  async start(port = 0): Promise<string> {
    const app = Fastify({ logger: false });
    app.register(wire, {
      keyFor: (from) => (from === 'clc' ? this.key : undefined),
      handlers: [
        handler(cc.RunInstances, (req) => {
          this.record('RunInstances', req);
          const fresh = req.instances.filter((i) => !this.instances.has(i.instanceId));
          const fits = Math.min(fresh.length, this.capacity);
          const known = req.instances.length - fresh.length;
          if (known + fits < req.minCount) throw new WireError('InsufficientInstanceCapacity', `only ${known + fits} of ${req.minCount} fit`, 500);
          for (const spec of fresh.slice(0, fits)) this.instances.set(spec.instanceId, { spec, state: 'pending', node: 'node1' });
          this.capacity -= fits;
          if (this.dieAfterPlacing) {
            this.dieAfterPlacing = false;
            this.down = true;
            throw new WireError('ServiceUnavailable', 'fake cc died after placing the launch', 503);
          }
          return { placed: req.instances.filter((i) => this.instances.has(i.instanceId)).map((i) => ({ instanceId: i.instanceId, node: 'node1' })) };
        }),
        handler(cc.TerminateInstances, (req) => {
          this.record('TerminateInstances', req);
          return {
            instances: req.instanceIds.map((id) => {
              const i = this.instances.get(id);
              const previousState = i?.state ?? 'terminated';
              if (i) i.state = 'shutting-down';
              return { instanceId: id, previousState, state: i ? 'shutting-down' as const : 'terminated' as const };
            }),
          };
        }),
        handler(cc.DescribeInstances, async (req) => {
          this.record('DescribeInstances', req);
          await this.beforeDescribe?.();
          return {
            instances: [...this.instances.values()].map((i) => ({
              instanceId: i.spec.instanceId, reservationId: i.spec.reservationId, ownerId: i.spec.ownerId, imageId: i.spec.imageId,
              state: i.state, vmType: i.spec.vmType, launchTime: new Date().toISOString(), node: i.node,
              privateIp: '10.0.0.5', ...(i.stateReason ? { stateReason: i.stateReason } : {}),
              ...(i.nodeUnreachableSince ? { nodeUnreachableSince: i.nodeUnreachableSince } : {}),
              ...(i.volumes?.some((v) => !this.unreported.has(v.volumeId)) ? { volumes: i.volumes.filter((v) => !this.unreported.has(v.volumeId)) } : {}),
            })),
          };
        }),
        handler(cc.DescribeResources, (req) => {
          this.record('DescribeResources', req);
          return { nodes: [], availability: req.vmTypes.map((t) => ({ name: t.name, max: 100, available: this.capacity })) };
        }),
        handler(cc.DescribeNodes, (req) => {
          this.record('DescribeNodes', req);
          return { nodes: [{ node: 'node1', url: 'http://127.0.0.1:1', state: 'ENABLED' as const }] };
        }),
        handler(cc.AttachVolume, (req) => {
          this.record('AttachVolume', req);
          const i = this.instances.get(req.instanceId);
          if (!i) throw new WireError('InvalidInstanceID.NotFound', `no instance ${req.instanceId}`, 404);
          const volume = { volumeId: req.volumeId, device: req.device, guestDevice: `vd${req.device.slice(-1)}` };
          i.volumes = [...(i.volumes ?? []), volume];
          return { volume };
        }),
        handler(cc.DetachVolume, (req) => {
          this.record('DetachVolume', req);
          const i = this.instances.get(req.instanceId);
          if (!i) throw new WireError('InvalidInstanceID.NotFound', `no instance ${req.instanceId}`, 404);
          i.volumes = i.volumes?.filter((v) => v.volumeId !== req.volumeId);
          return { detached: true };
        }),
        handler(cc.FreezeInstance, (req) => {
          this.record('FreezeInstance', req);
          return { consistency: 'crash' as const, frozenMs: 1 };
        }),
        handler(cc.ThawInstance, (req) => {
          this.record('ThawInstance', req);
          if (this.thawDown) throw new WireError('ServiceUnavailable', 'the node is not answering', 503);
          return { heldMs: 5 };
        }),
        handler(cc.RebootInstances, (req) => {
          this.record('RebootInstances', req);
          return {};
        }),
        handler(cc.GetConsoleOutput, (req) => {
          this.record('GetConsoleOutput', req);
          return { instanceId: req.instanceId, output: Buffer.from(`console of ${req.instanceId}\n`).toString('base64'), timestamp: new Date().toISOString() };
        }),
      ],
    });
    this.url = await app.listen({ port, host: '127.0.0.1' });
    this.app = app;
    return this.url;
  }

  async stop(): Promise<void> {
    await this.app?.close();
  }
}

/** A running instance the fake cc reports running, as a launch would have left it. */
export function recordRunning(db: Db, fake: FakeCc, accountId: string, instanceId: string, rootDeviceType: 'ebs' | 'instance-store' = 'ebs'): void {
  const now = new Date(Date.now() - 1000).toISOString();
  const i: NewInstance = {
    instance_id: instanceId, account_id: accountId, reservation_id: `r-${instanceId.slice(2)}`, launch_index: 0, zone: 'zone-a',
    image_id: 'emi-12345678', image_location: '', kernel_id: null, ramdisk_id: null, architecture: 'x86_64', platform: null,
    root_device_type: rootDeviceType, root_device_name: '/dev/sda1', virtualization_type: 'paravirtual', instance_type: 't1.micro',
    vm_cpu: 1, vm_memory_mib: 256, vm_disk_gib: 5, key_name: null, public_key: null, user_data: null, launch_time: now,
  };
  db.transaction(() => insertReservation(db, { reservationId: i.reservation_id, accountId, createdAt: now }, [i], []))();
  db.prepare("UPDATE instances SET state = 'running', reported = 1, node = 'node1' WHERE instance_id = ?").run(instanceId);
  if (rootDeviceType === 'ebs') {
    // Its root volume, attached at the root device from the start (as RunInstances records it).
    const volumeId = `vol-${instanceId.slice(2)}`;
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES (?, ?, 'zone-a', 1, 'in-use', ?)").run(volumeId, accountId, now);
    db.prepare("INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time) VALUES (?, ?, '/dev/sda1', 'attached', ?)").run(volumeId, instanceId, now);
  }
  const spec = { instanceId, reservationId: i.reservation_id, ownerId: accountId, launchIndex: 0, imageId: i.image_id, imageLocation: '',
    vmType: { name: 't1.micro', cores: 1, memoryMiB: 256, diskGiB: 5 }, groupNames: [] } satisfies InstanceSpec;
  fake.instances.set(instanceId, { spec, state: 'running', node: 'node1' });
}
