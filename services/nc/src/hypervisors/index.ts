// Picks the driver HYPERVISOR names: `simulated` is built in; libvirt/kvm/qemu load the libvirt driver
// module on demand, so hosts (and tests) without libvirt never touch its native bindings.
import type { CreateHypervisor, Hypervisor, HypervisorContext } from '../hypervisor.js';

export class HypervisorUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HypervisorUnavailableError';
  }
}

export async function loadHypervisor(ctx: HypervisorContext): Promise<Hypervisor> {
  const kind = ctx.config.HYPERVISOR;
  if (kind === 'simulated') {
    const { createHypervisor } = await import('./simulated.js');
    return createHypervisor(ctx);
  }
  let mod: { createHypervisor?: CreateHypervisor; default?: CreateHypervisor };
  try {
    const driver = './libvirt.js'; // not a literal import: the module may not exist in this build
    mod = (await import(driver)) as typeof mod;
  } catch (err) {
    throw new HypervisorUnavailableError(
      `HYPERVISOR="${kind}" needs the libvirt driver (services/nc/src/hypervisors/libvirt.ts), which could not be loaded: ${(err as Error).message}. ` +
        'Set HYPERVISOR="simulated" in mallee.conf to run without real guests.',
    );
  }
  const create = mod.createHypervisor ?? mod.default;
  if (typeof create !== 'function') {
    throw new HypervisorUnavailableError('the libvirt driver module exports no createHypervisor(ctx) (see services/nc/src/hypervisor.ts)');
  }
  return create(ctx);
}
