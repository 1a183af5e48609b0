// A stand-in for a Cluster Controller, built with the real `wire` plugin: it serves the cc operations
// the clc calls from a table the test controls, and counts every call, so tests can make a cluster
// refuse, forget or duplicate things that a real cc would only do under failure.
import Fastify, { type FastifyInstance } from 'fastify';
import { cc, handler, wire, WireError, generateKey, type InstanceSpec, type InstanceStateName } from '@mallee/wire';

export interface FakeInstance { spec: InstanceSpec; state: InstanceStateName; node: string; stateReason?: string; nodeUnreachableSince?: string }

export class FakeCc {
  readonly instances = new Map<string, FakeInstance>();
  readonly calls: { op: string; body: unknown }[] = [];
  /** How many more instances fit (per RunInstances, across types). */
  capacity = 100;
  /** Set to make every call fail as an unreachable cc would look to the clc's poller. */
  down = false;
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
        handler(cc.DescribeInstances, (req) => {
          this.record('DescribeInstances', req);
          return {
            instances: [...this.instances.values()].map((i) => ({
              instanceId: i.spec.instanceId, reservationId: i.spec.reservationId, ownerId: i.spec.ownerId, imageId: i.spec.imageId,
              state: i.state, vmType: i.spec.vmType, launchTime: new Date().toISOString(), node: i.node,
              privateIp: '10.0.0.5', ...(i.stateReason ? { stateReason: i.stateReason } : {}),
              ...(i.nodeUnreachableSince ? { nodeUnreachableSince: i.nodeUnreachableSince } : {}),
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
