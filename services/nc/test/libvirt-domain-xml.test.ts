// The domain XML the libvirt driver defines, checked without libvirt: sizes, boot, devices, metadata.
import { describe, expect, it } from 'vitest';
import { buildDomainXml, parseDomainXml, type DomainSpec, type MalleeDomainMetadata } from '../src/hypervisors/libvirt-domain-xml.js';

const meta: MalleeDomainMetadata = {
  instanceId: 'i-0a1b2c3d',
  node: '/var/lib/mallee',
  imageId: 'emi-00000001',
  reservationId: 'r-00000001',
  ownerId: '000000000001',
  vmTypeName: 't1.micro',
  cores: 1,
  memoryMiB: 256,
  diskGiB: 5,
  instanceDir: '/var/lib/mallee/instances/i-0a1b2c3d',
  createdAt: '2025-01-01T00:00:00.000Z',
};
const spec = (extra: Partial<DomainSpec> = {}): DomainSpec => ({
  name: 'i-0a1b2c3d',
  type: 'qemu',
  memoryMiB: 256,
  cores: 1,
  kernel: '/k',
  ramdisk: '/r',
  cmdline: 'console=ttyS0 root=/dev/vda rw',
  disks: [{ target: 'vda', file: '/root.qcow2', format: 'qcow2' }],
  consoleLog: '/console.log',
  network: { kind: 'user' },
  metadata: meta,
  ...extra,
});

describe('libvirt domain XML', () => {
  it('a guest-agent domain has one virtio channel named org.qemu.guest_agent.0 (libvirt picks the socket)', () => {
    const xml = buildDomainXml(spec({ guestAgent: true }));
    expect(xml.match(/<channel /g)).toHaveLength(1);
    expect(xml).toContain(`<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`);
    expect(buildDomainXml(spec())).not.toContain('<channel');
  });

  it('memory and vcpus are the instance type, and the metadata reads back', () => {
    const parsed = parseDomainXml(buildDomainXml(spec({ guestAgent: true })));
    expect(parsed).toMatchObject({ name: 'i-0a1b2c3d', memoryMiB: 256, cores: 1 });
    expect(parsed.metadata).toEqual(meta);
  });
});
