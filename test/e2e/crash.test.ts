// kill -9 of the clc in the middle of a burst of RunInstances from parallel clients: after a restart
// every instance whose RunInstances returned exists exactly once and reaches running.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancesOf, items } from './helpers/ec2-client.js';
import { eventually, sleep, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

let cloud: Cloud;
beforeAll(async () => {
  // Room for every launch of the burst (the simulated node's default is 4 cores).
  cloud = await startCloud({ conf: { SIM_CORES: 512, SIM_MEM: 512 * 1024, SIM_DISK: 512 * 20 } });
});
afterAll(async () => {
  await cloud?.stop();
});

describe('clc crash during a RunInstances burst', () => {
  it('after kill -9 and restart, every instance whose RunInstances returned exists exactly once and reaches running', async () => {
    const image = await registerTestImage(cloud, 'crash/img.manifest.xml', 'crash-image');
    const returned: string[] = [];
    let inFlight = 0;
    let maxInFlightAtCrash = 0;
    let crashed = false;
    let refused: string | undefined;
    const worker = async () => {
      while (!crashed) {
        inFlight++;
        try {
          const r = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 2, InstanceType: 'm1.small' });
          if (r.status !== 200) {
            refused = `${r.status} ${r.code}: ${r.body.slice(0, 300)}`;
            return;
          }
          returned.push(...items(r.xml.instancesSet).map((i) => String(i.instanceId)));
        } catch {
          return; // the clc went away mid-request: this launch's fate is unknown to the client
        } finally {
          inFlight--;
        }
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    await eventually('a few launches returned', async () => {
      if (refused) throw new Error(`RunInstances refused before the crash: ${refused}`);
      return returned.length >= 6 ? true : undefined;
    }, 30_000);
    const pid = Number(readFileSync(join(cloud.home, 'run', 'clc.pid'), 'utf8'));
    maxInFlightAtCrash = inFlight;
    process.kill(pid, 'SIGKILL');
    crashed = true;
    await Promise.all(workers);
    expect(returned.length).toBeGreaterThan(0);

    await sleep(200);
    await cloud.mallee(['up', '--detach']);

    const all = await eventually('every returned instance running after the restart', async () => {
      const r = await cloud.client.ok('DescribeInstances');
      const instances = instancesOf(r);
      const running = new Set(instances.filter((i) => i.state === 'running').map((i) => i.instanceId));
      return returned.every((id) => running.has(id)) ? instances : undefined;
    }, 90_000);
    console.log(`clc killed with ${maxInFlightAtCrash} RunInstances in flight; ${returned.length} instances returned before; ${all.length} exist after the restart`);
    const seen = new Map<string, number>();
    for (const i of all) seen.set(i.instanceId, (seen.get(i.instanceId) ?? 0) + 1);
    for (const id of returned) expect(seen.get(id), `${id} listed once`).toBe(1);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    // Launches the client never heard back about may exist or not, but nothing beyond them.
    expect(all.length).toBeLessThanOrEqual(returned.length + maxInFlightAtCrash * 2);
  });
});
