// The few libvirt calls the driver makes, through the @unraid/libvirt N-API bindings; `virsh` (same
// libvirt, over execFile) covers what those bindings lack: reboot and reset.
// The bindings are loaded at run time and typed here, so the NC builds and type-checks on hosts where
// the native module could not be built (it is an optional dependency; the simulated driver needs none).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** libvirt's virDomainState. */
export const DomainState = { NOSTATE: 0, RUNNING: 1, BLOCKED: 2, PAUSED: 3, SHUTDOWN: 4, SHUTOFF: 5, CRASHED: 6, PMSUSPENDED: 7 } as const;

interface NativeDomain {
  create(): Promise<void>;
  shutdown(): Promise<void>;
  destroy(): Promise<void>;
  undefine(): Promise<void>;
  getXMLDesc(flags?: number): Promise<string>;
  getInfo(): Promise<{ state: number; maxMem: number; memory: number; nrVirtCpu: number }>;
  getName(): Promise<string>;
}

interface NativeHypervisor {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  connectListAllDomains(flags?: number): Promise<NativeDomain[]>;
  domainDefineXML(xml: string): Promise<NativeDomain>;
  domainLookupByName(name: string): Promise<NativeDomain>;
  nodeGetInfo(): Promise<{ memory: number; cpus: number }>;
}

interface LibvirtModule {
  Hypervisor: new (opts: { uri: string }) => NativeHypervisor;
}

export class LibvirtUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LibvirtUnavailableError';
  }
}

export async function loadBindings(): Promise<LibvirtModule> {
  const name = '@unraid/libvirt'; // not a literal import: the optional dependency may be absent
  try {
    return (await import(name)) as LibvirtModule;
  } catch (err) {
    throw new LibvirtUnavailableError(
      `the libvirt bindings (${name}) could not be loaded: ${(err as Error).message}. ` +
        'Install libvirt-dev and run `npm rebuild @unraid/libvirt`.',
    );
  }
}

/** A domain as the driver sees it: name, state and its live XML. */
export interface DomainView {
  name: string;
  state: number;
  xml: string;
}

export function isNoDomainError(err: unknown): boolean {
  // The bindings do not carry libvirt's error code (VIR_ERR_NO_DOMAIN), only its message.
  return /domain not found|no domain with matching/i.test((err as Error)?.message ?? '');
}

/** The messages libvirt gives once the daemon behind a connection has gone (restart, crash). */
export function isConnectionLost(err: unknown): boolean {
  return /client socket is closed|Broken pipe|Cannot (write|recv) data|End of file while reading|connection (is )?closed|not connected/i.test(
    (err as Error)?.message ?? '',
  );
}

export class LibvirtConnection {
  private conn: NativeHypervisor | undefined;

  constructor(readonly uri: string) {}

  async open(): Promise<void> {
    const { Hypervisor } = await loadBindings();
    const conn = new Hypervisor({ uri: this.uri });
    try {
      await conn.connectOpen();
    } catch (err) {
      throw new LibvirtUnavailableError(
        `cannot connect to libvirt at ${this.uri}: ${(err as Error).message} (is libvirtd running? start it with \`virtlogd -d; libvirtd -d\`)`,
      );
    }
    this.conn = conn;
  }

  async close(): Promise<void> {
    const conn = this.conn;
    this.conn = undefined;
    await conn?.connectClose().catch(() => undefined);
  }

  /**
   * Run `fn` on the connection; when libvirtd was restarted under us (the socket is gone), reconnect
   * once and run it again, so an NC outlives a libvirtd restart.
   */
  private async with<T>(fn: (c: NativeHypervisor) => Promise<T>): Promise<T> {
    if (!this.conn) throw new LibvirtUnavailableError('libvirt connection is not open');
    try {
      return await fn(this.conn);
    } catch (err) {
      if (!isConnectionLost(err)) throw err;
      const stale = this.conn;
      this.conn = undefined;
      await stale?.connectClose().catch(() => undefined);
      await this.open();
      return fn(this.conn as unknown as NativeHypervisor);
    }
  }

  async nodeInfo(): Promise<{ cpus: number; memoryKiB: number }> {
    const info = await this.with((c) => c.nodeGetInfo());
    return { cpus: info.cpus, memoryKiB: info.memory };
  }

  /** Every domain (running or defined), with its live XML. Domains that vanish meanwhile are skipped. */
  async listDomains(): Promise<DomainView[]> {
    const out: DomainView[] = [];
    for (const d of await this.with((c) => c.connectListAllDomains())) {
      try {
        const [name, info, xml] = await Promise.all([d.getName(), d.getInfo(), d.getXMLDesc()]);
        out.push({ name, state: info.state, xml });
      } catch (err) {
        if (!isNoDomainError(err)) throw err;
      }
    }
    return out;
  }

  /** The domain's state, or undefined when no such domain exists. */
  async domainState(name: string): Promise<number | undefined> {
    try {
      return (await (await this.lookup(name)).getInfo()).state;
    } catch (err) {
      if (isNoDomainError(err)) return undefined;
      throw err;
    }
  }

  async domainXml(name: string): Promise<string | undefined> {
    try {
      return await (await this.lookup(name)).getXMLDesc();
    } catch (err) {
      if (isNoDomainError(err)) return undefined;
      throw err;
    }
  }

  /** Define a persistent domain and start it. */
  async defineAndStart(xml: string): Promise<void> {
    const d = await this.with((c) => c.domainDefineXML(xml));
    await d.create();
  }

  /** ACPI power button. */
  async shutdown(name: string): Promise<void> {
    await (await this.lookup(name)).shutdown();
  }

  /** Pull the plug; a domain that is already off or gone is fine. */
  async destroy(name: string): Promise<void> {
    try {
      const d = await this.lookup(name);
      if ((await d.getInfo()).state !== DomainState.SHUTOFF) await d.destroy();
    } catch (err) {
      if (!isNoDomainError(err) && !/not running/i.test((err as Error).message)) throw err;
    }
  }

  async undefine(name: string): Promise<void> {
    try {
      await (await this.lookup(name)).undefine();
    } catch (err) {
      if (!isNoDomainError(err)) throw err;
    }
  }

  private lookup(name: string): Promise<NativeDomain> {
    return this.with((c) => c.domainLookupByName(name));
  }

  /** Graceful reboot: the guest gets the ACPI power button and libvirt resets it once it has powered off. */
  async reboot(name: string): Promise<void> {
    await this.virsh('reboot', name, '--mode', 'acpi');
  }

  /** Hard reset, like the reset button. */
  async reset(name: string): Promise<void> {
    await this.virsh('reset', name);
  }

  private async virsh(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('virsh', ['-q', '-c', this.uri, ...args], { timeout: 30_000 });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`virsh ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
    }
  }
}
