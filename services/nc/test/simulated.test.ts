import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedHypervisor } from '../src/index.js';
import { cleanup, spec, tempHome, waitFor } from './harness.js';

afterEach(cleanup);

const capacity = { cores: 4, memoryMiB: 8192, diskGiB: 100 };

describe('simulated hypervisor', () => {
  it('keeps thousands of guests across a restart of the driver, as libvirt keeps domains', async () => {
    const dir = tempHome();
    const a = new SimulatedHypervisor({ dir, bootDelayMs: 0, capacity });
    await a.init();
    const ids = Array.from({ length: 5000 }, () => spec().instanceId);
    for (const id of ids) await a.runInstance({ ...spec(), instanceId: id });
    await a.runInstance({ ...spec(), instanceId: ids[0]! }); // idempotent
    await a.terminateInstance(ids[1]!, { force: true });
    await a.close();
    const b = new SimulatedHypervisor({ dir, bootDelayMs: 0, capacity });
    await b.init();
    const guests = await b.listGuests();
    expect(guests).toHaveLength(4999);
    expect(new Set(guests.map((g) => g.instanceId))).toEqual(new Set(ids.filter((id) => id !== ids[1])));
    expect(guests.every((g) => g.state === 'running')).toBe(true);
    await b.close();
  });

  it('a guest is pending for the boot delay, then running; a terminated one shuts down, then is gone', async () => {
    const hv = new SimulatedHypervisor({ dir: tempHome(), bootDelayMs: 300, capacity });
    await hv.init();
    const s = spec();
    await hv.runInstance(s);
    expect((await hv.listGuests())[0]).toMatchObject({ instanceId: s.instanceId, state: 'pending', cores: 1, memoryMiB: 256 });
    expect((await hv.consoleOutput(s.instanceId)).toString()).not.toContain('boot done');
    await waitFor('running', async () => (await hv.listGuests())[0]?.state === 'running');
    expect((await hv.consoleOutput(s.instanceId)).toString()).toContain(`mallee: boot done ${s.instanceId}`);
    await hv.terminateInstance(s.instanceId, { force: false });
    expect((await hv.listGuests())[0]?.state).toBe('shutting-down');
    await waitFor('gone', async () => (await hv.listGuests()).length === 0);
    await expect(hv.consoleOutput(s.instanceId)).rejects.toThrow(/no guest/);
    await hv.close();
  });

  it('a reboot interrupting a boot never prints that boot’s marker', async () => {
    const hv = new SimulatedHypervisor({ dir: tempHome(), bootDelayMs: 300, capacity });
    await hv.init();
    const s = spec();
    await hv.runInstance(s);
    await hv.rebootInstance(s.instanceId);
    const text = await waitFor('booted', async () => {
      const t = (await hv.consoleOutput(s.instanceId)).toString();
      return t.includes('boot done') ? t : undefined;
    });
    expect(text.split(`mallee: boot done ${s.instanceId}`)).toHaveLength(2);
    expect(text.indexOf('reboot requested')).toBeLessThan(text.indexOf('boot done'));
    await hv.close();
  });
});
