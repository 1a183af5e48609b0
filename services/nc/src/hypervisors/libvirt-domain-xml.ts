// Libvirt domain XML for a Mallee instance, and reading back what the driver put there: the domain
// carries its instance's identity in <metadata>, so a restarted NC finds and adopts its guests.
import { XMLParser } from 'fast-xml-parser';

/** Namespace of the <metadata> element Mallee writes into each domain it defines. */
export const MALLEE_METADATA_NS = 'https://mallee.invalid/xmlns/libvirt-instance/1';

export type DomainType = 'kvm' | 'qemu';

/** Identity and sizing stored in the domain, enough to report the guest without any other state. */
export interface MalleeDomainMetadata {
  instanceId: string;
  /** The NC home that owns the guest: several NCs on one host each see only their own. */
  node: string;
  imageId: string;
  reservationId: string;
  ownerId: string;
  vmTypeName: string;
  cores: number;
  memoryMiB: number;
  diskGiB: number;
  instanceDir: string;
  createdAt: string;
}

export interface FileDisk {
  /** Guest device, e.g. vda; the order is vda root, vdb swap, vdc ephemeral0 (Eucalyptus sda1/sda2/sda3). */
  target: string;
  file: string;
  format: 'raw' | 'qcow2';
  readonly?: boolean;
}

/** A disk whose <disk> element another module renders (an EBS volume's iSCSI network disk). */
export interface RenderedDisk {
  target: string;
  xml: string;
}

export type DomainDisk = FileDisk | RenderedDisk;

export interface DomainSpec {
  name: string;
  type: DomainType;
  memoryMiB: number;
  cores: number;
  /** Kernel boot (EKI/ERI): libvirt hands the kernel, initrd and command line to QEMU directly. */
  kernel?: string;
  ramdisk?: string;
  cmdline?: string;
  disks: DomainDisk[];
  /** File the serial console (ttyS0) is appended to. */
  consoleLog: string;
  network: { kind: 'user'; mac?: string } | { kind: 'bridge'; bridge: string; mac: string; tap: string; mtu?: number } | { kind: 'none' };
  /** Have SeaBIOS write to the serial console too (the KVM probe uses it). */
  biosOnSerial?: boolean;
  /**
   * A virtio-serial port named org.qemu.guest_agent.0 for a QEMU guest agent in the guest (libvirt picks
   * the host socket): `virsh qemu-agent-command <id> '{"execute":"guest-ping"}'`, fsfreeze for snapshots.
   */
  guestAgent?: boolean;
  metadata?: MalleeDomainMetadata;
}

const esc = (s: string | number): string =>
  String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

export function buildDomainXml(d: DomainSpec): string {
  const os: string[] = [`<type arch='x86_64' machine='pc'>hvm</type>`];
  if (d.kernel) {
    os.push(`<kernel>${esc(d.kernel)}</kernel>`);
    if (d.ramdisk) os.push(`<initrd>${esc(d.ramdisk)}</initrd>`);
    if (d.cmdline) os.push(`<cmdline>${esc(d.cmdline)}</cmdline>`);
  } else {
    os.push(`<boot dev='hd'/>`);
  }
  if (d.biosOnSerial) os.push(`<bios useserial='yes'/>`);

  const devices: string[] = d.disks.map(
    (disk) => 'xml' in disk ? disk.xml :
      `<disk type='file' device='disk'><driver name='qemu' type='${disk.format}' discard='unmap'/>` +
      `<source file='${esc(disk.file)}'/><target dev='${esc(disk.target)}' bus='virtio'/>${disk.readonly ? '<readonly/>' : ''}</disk>`,
  );
  const nic = interfaceXml(d.network);
  if (nic) devices.push(nic);
  const qemuArgs = d.network.kind === 'user' ? userModeNicArgs(d.network.mac) : [];
  if (d.guestAgent) devices.push(`<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`);
  const log = `<source path='${esc(d.consoleLog)}' append='on'/>`;
  devices.push(
    `<serial type='file'>${log}<target port='0'/></serial>`,
    `<console type='file'>${log}<target type='serial' port='0'/></console>`,
    `<controller type='usb' model='none'/>`,
    `<memballoon model='none'/>`,
  );

  const metadata = d.metadata ? `<metadata>${renderMetadata(d.metadata)}</metadata>` : '';
  return [
    qemuArgs.length ? `<domain type='${d.type}' xmlns:qemu='${QEMU_NS}'>` : `<domain type='${d.type}'>`,
    `<name>${esc(d.name)}</name>`,
    metadata,
    `<memory unit='MiB'>${d.memoryMiB}</memory>`,
    `<currentMemory unit='MiB'>${d.memoryMiB}</currentMemory>`,
    `<vcpu placement='static'>${d.cores}</vcpu>`,
    `<os>${os.join('')}</os>`,
    `<features><acpi/><apic/></features>`,
    `<clock offset='utc'/>`,
    // A reboot request is carried out by libvirt as power-off then reset; a guest that powers
    // itself off stays defined (shut off) so the driver can report it and clean up its disks.
    `<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>`,
    `<devices>${devices.join('')}</devices>`,
    qemuArgs.length ? `<qemu:commandline>${qemuArgs.map((a) => `<qemu:arg value='${esc(a)}'/>`).join('')}</qemu:commandline>` : '',
    `</domain>`,
  ].join('\n');
}

// ---- networking (issue 6): the guest's one NIC ----
const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';

/**
 * VNET_MODE=USERMODE: QEMU user-mode (slirp) networking with restrict=on — the guest gets its address by
 * DHCP from slirp and can reach nothing: no connection it opens leaves the host (slirp would otherwise
 * NAT it onto the host's network, 169.254.169.254 and DNS included). libvirt's <interface type='user'>
 * has no restrict option, hence the netdev on QEMU's command line. The guest's metadata, user data and
 * key come from its config drive in this mode.
 */
function userModeNicArgs(mac: string | undefined): string[] {
  // QEMU creates command-line devices before libvirt's, so the NIC takes the last slot of pci.0, which
  // libvirt (allocating from slot 2 up, hot-plugged volumes included) does not reach.
  return ['-netdev', 'user,id=mallee-net0,restrict=on', '-device', `virtio-net-pci,netdev=mallee-net0,bus=pci.0,addr=0x1f${mac ? `,mac=${mac}` : ''}`];
}

function interfaceXml(n: DomainSpec['network']): string | undefined {
  if (n.kind === 'user') return undefined; // on QEMU's command line (userModeNicArgs)
  if (n.kind === 'bridge') {
    // On the network's bridge, through a tap named so the node's ebtables rules can match it.
    const mtu = n.mtu ? `<mtu size='${n.mtu}'/>` : '';
    return `<interface type='bridge'><mac address='${esc(n.mac)}'/><source bridge='${esc(n.bridge)}'/><target dev='${esc(n.tap)}'/><model type='virtio'/>${mtu}</interface>`;
  }
  return undefined;
}

function renderMetadata(m: MalleeDomainMetadata): string {
  const fields = Object.entries(m)
    .map(([k, v]) => `<mallee:${k}>${esc(v as string | number)}</mallee:${k}>`)
    .join('');
  return `<mallee:instance xmlns:mallee='${MALLEE_METADATA_NS}'>${fields}</mallee:instance>`;
}

/** What the driver reads back from a domain's live XML. */
export interface ParsedDomain {
  name: string;
  memoryMiB: number;
  cores: number;
  metadata?: MalleeDomainMetadata;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  removeNSPrefix: false,
});

const NUMERIC_FIELDS = new Set(['cores', 'memoryMiB', 'diskGiB']);

export function parseDomainXml(xml: string): ParsedDomain {
  const doc = parser.parse(xml) as { domain?: Record<string, unknown> };
  const dom = doc.domain ?? {};
  const text = (v: unknown): string => (typeof v === 'object' && v !== null ? String((v as Record<string, unknown>)['#text'] ?? '') : String(v ?? ''));
  const memory = dom.memory as Record<string, unknown> | string | undefined;
  const unit = typeof memory === 'object' ? String(memory['@unit'] ?? 'KiB') : 'KiB';
  const memAmount = Number(text(memory));
  const out: ParsedDomain = {
    name: text(dom.name),
    memoryMiB: toMiB(memAmount, unit),
    cores: Number(text(dom.vcpu)) || 0,
  };
  const meta = (dom.metadata as Record<string, unknown> | undefined)?.['mallee:instance'] as Record<string, unknown> | undefined;
  // Only our namespace counts: another tool's "mallee:" prefix is not Mallee's metadata.
  if (meta && meta['@xmlns:mallee'] === MALLEE_METADATA_NS) {
    const fields: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(meta)) {
      if (!k.startsWith('mallee:')) continue;
      const key = k.slice('mallee:'.length);
      fields[key] = NUMERIC_FIELDS.has(key) ? Number(text(v)) : text(v);
    }
    if (typeof fields.instanceId === 'string' && fields.instanceId) out.metadata = fields as unknown as MalleeDomainMetadata;
  }
  return out;
}

function toMiB(amount: number, unit: string): number {
  const factor: Record<string, number> = { b: 1 / 1048576, bytes: 1 / 1048576, k: 1 / 1024, kib: 1 / 1024, m: 1, mib: 1, g: 1024, gib: 1024 };
  return Math.round(amount * (factor[unit.toLowerCase()] ?? 1 / 1024));
}
