// The domain rewrite a live migration hands the destination libvirtd (libvirt-migration.ts), on a live XML
// as libvirt 9 dumps it (`virsh dumpxml --migratable` of a Mallee guest with a volume attached): which disks
// QEMU copies, and that the destination's definition names only destination paths, owner and export.
import { describe, expect, it } from 'vitest';
import { localDisks, rewriteForDestination } from '../src/hypervisors/libvirt-migration.js';
import { MALLEE_METADATA_NS, parseDomainXml } from '../src/hypervisors/libvirt-domain-xml.js';
import { volumeDisks } from '../src/hypervisors/libvirt-volumes.js';

const src = '/srv/node1/instances/i-1a2b3c4d';
const live = `<domain type='qemu'>
  <name>i-1a2b3c4d</name>
  <metadata>
    <mallee:instance xmlns:mallee="${MALLEE_METADATA_NS}">
      <mallee:instanceId>i-1a2b3c4d</mallee:instanceId>
      <mallee:node>/srv/node1</mallee:node>
      <mallee:instanceDir>${src}</mallee:instanceDir>
    </mallee:instance>
  </metadata>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>${src}/kernel</kernel><initrd>${src}/ramdisk</initrd></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${src}/root.qcow2' index='4'/>
      <backingStore type='file' index='5'>
        <format type='raw'/>
        <source file='/srv/node1/libvirt/cache/emi-00000001'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${src}/swap.img' index='3'/>
      <backingStore/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${src}/config-drive.iso' index='2'/>
      <target dev='vdd' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source protocol='iscsi' name='iqn.2010-05.org.mallee:sc.vol-0a0b0c0d.10-99-0-2/1' index='1'>
        <host name='10.99.0.1' port='3260'/>
        <auth username='sc.vol-0a0b0c0d.10-99-0-2'><secret type='iscsi' usage='mallee/aaaa'/></auth>
      </source>
      <target dev='vde' bus='virtio'/>
      <serial>vol-0a0b0c0d</serial>
    </disk>
    <serial type='file'><source path='${src}/console.log' append='on'/><target port='0'/></serial>
  </devices>
</domain>`;

const dest = {
  instanceDir: '/srv/node2/instances/i-1a2b3c4d',
  owner: '/srv/node2',
  disks: [{
    volumeId: 'vol-0a0b0c0d',
    source: "<source protocol='iscsi' name='iqn.2010-05.org.mallee:sc.vol-0a0b0c0d.10-99-0-3/1'><host name='10.99.0.1' port='3260'/><auth username='sc.vol-0a0b0c0d.10-99-0-3'><secret type='iscsi' usage='mallee/bbbb'/></auth></source>",
  }],
};

describe('live migration: the destination domain', () => {
  it('copies the local writable disks only (not the read-only config drive, not the iSCSI volume)', () => {
    expect(localDisks(live)).toEqual(['vda', 'vdb']);
  });

  it('names only the destination: instance directory, owner, the volume through its own export, no source cache', () => {
    const out = rewriteForDestination(live, { instanceDir: src, owner: '/srv/node1' }, dest);
    expect(out).not.toContain('/srv/node1');
    expect(out).not.toContain('10-99-0-2');
    expect(out).not.toContain('backingStore');
    const meta = parseDomainXml(out).metadata!;
    expect(meta.node).toBe('/srv/node2');
    expect(meta.instanceDir).toBe(dest.instanceDir);
    expect(out).toContain(`<source file='${dest.instanceDir}/root.qcow2' index='4'/>`);
    expect(out).toContain(`<kernel>${dest.instanceDir}/kernel</kernel>`);
    expect(out).toContain(`<source path='${dest.instanceDir}/console.log' append='on'/>`);
    // The volume stays at its guest device, with its serial: only where QEMU opens it from changed.
    expect(volumeDisks(out)).toEqual([expect.objectContaining({ volumeId: 'vol-0a0b0c0d', guestDevice: 'vde', iqn: 'iqn.2010-05.org.mallee:sc.vol-0a0b0c0d.10-99-0-3' })]);
    expect(out).toContain("usage='mallee/bbbb'");
    expect(localDisks(out)).toEqual(['vda', 'vdb']);
  });

  it('refuses a destination for a volume the guest does not have', () => {
    expect(() => rewriteForDestination(live, { instanceDir: src, owner: '/srv/node1' }, { ...dest, disks: [{ volumeId: 'vol-99999999', source: '<source/>' }] }))
      .toThrow(/no disk of volume vol-99999999/);
  });
});
