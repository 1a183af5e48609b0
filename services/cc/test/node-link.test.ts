// The cc's view of one node (NodeLink) against a real NC daemon (simulated hypervisor): an answer to a
// poll sent before the cc itself dropped an instance (a migration moved it away) must not bring it back,
// or the cc would route that instance's calls (console output, terminate) to the node it left.
import { afterEach, describe, expect, it } from 'vitest';
import { cc, readKeyFile } from '@mallee/wire';
import { nodeKeyFile } from '@mallee/nc';
import { NodeLink } from '../src/node-link.js';
import { cleanup, specs, startCc, startNc, waitFor } from './harness.js';

afterEach(cleanup);

describe('NodeLink', () => {
  it('an answer to a poll sent before forget() does not bring the instance back; the next poll is the node\'s word again', async () => {
    const node = await startNc('node1', { SIM_CORES: 4 });
    const ccd = await startCc();
    await ccd.register(node);
    const [spec] = specs(1);
    await ccd.client.call(cc.RunInstances, { instances: [spec!], minCount: 1 });
    const id = spec!.instanceId;
    const link = new NodeLink({ name: node.name, url: node.url, key: readKeyFile(nodeKeyFile(node.home))!, registeredAt: new Date().toISOString() }, 5_000);
    const seen = () => undefined;
    await waitFor('the instance reported running', async () => {
      await link.poll(seen);
      return link.instance(id)?.state === 'running';
    });

    // The poll is on the wire (its requests are sent before poll() returns) when the cc drops the instance.
    const inFlight = link.poll(seen);
    link.forget(id);
    await inFlight;
    expect(link.instance(id)).toBeUndefined();
    expect(link.takeChanges().deletes).toContain(id);

    // A poll sent after forget() is believed: the instance is still there, so it is back.
    await link.poll(seen);
    expect(link.instance(id)?.state).toBe('running');
  });
});
