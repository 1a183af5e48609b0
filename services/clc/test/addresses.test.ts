// Elastic and auto-assigned public addresses and private addresses in the clc, with a real cc and nc
// (simulated hypervisor; the cc's network is inactive here: no VNET_PRIVINTERFACE on this host).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, instancesOf, items, startTestCloud, type TestCloud } from './harness.js';

let cloud: TestCloud;
let image: string;
const net = { VNET_MODE: 'MANAGED', VNET_PUBLICIPS: '198.51.100.10-198.51.100.12', VNET_PRIVINTERFACE: 'mallee-none0' };
beforeAll(async () => {
  cloud = await startTestCloud({ clc: net, cc: net });
  image = await cloud.registerImage('img');
});
afterAll(async () => {
  await cloud?.stop();
});

const describeOne = async (id: string) => instancesOf(await cloud.ec2.ok('DescribeInstances', { 'InstanceId.1': id }))[0]!.item;
const addresses = async () => items((await cloud.ec2.ok('DescribeAddresses')).addressesSet);

describe('addresses', () => {
  let a = '';
  let b = '';
  it('instances get a private address, MAC and DNS name in their group\'s network, and a public address from the pool', async () => {
    const run = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2 });
    [a, b] = items(run.instancesSet).map((i) => String(i.instanceId)) as [string, string];
    const ia = await describeOne(a);
    expect(ia.privateIpAddress).toBe('172.31.0.66');
    expect(ia.privateDnsName).toBe('ip-172-31-0-66.mallee.compute.internal');
    expect(ia.ipAddress).toBe('198.51.100.10');
    expect((await describeOne(b)).privateIpAddress).toBe('172.31.0.67');
    // Auto-assigned addresses are not the account's elastic addresses.
    expect(await addresses()).toEqual([]);
    const other = await cloud.ec2.ok('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'w' });
    expect(other.groupId).toBeDefined();
    const c = String(items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, 'SecurityGroup.1': 'web', AddressingType: 'private' })).instancesSet)[0]!.instanceId);
    const ic = await describeOne(c);
    expect(ic.privateIpAddress).toBe('172.31.0.98'); // the next network
    expect(ic.ipAddress).toBeUndefined();
    await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': c });
  });

  it('allocate, associate (the auto address goes back), move, disassociate, release; EC2 error codes', async () => {
    const alloc = await cloud.ec2.ok('AllocateAddress');
    const eip = String(alloc.publicIp);
    expect(eip).toBe('198.51.100.12');
    expect(String(alloc.allocationId)).toMatch(/^eipalloc-[0-9a-f]{8}$/);
    expect((await cloud.ec2.call('AllocateAddress')).code).toBe('AddressLimitExceeded');
    const assoc = await cloud.ec2.ok('AssociateAddress', { PublicIp: eip, InstanceId: a });
    expect(String(assoc.associationId)).toMatch(/^eipassoc-/);
    expect((await describeOne(a)).ipAddress).toBe(eip);
    // a's auto-assigned address is free again: moving the EIP to b gives a a fresh one.
    await cloud.ec2.ok('AssociateAddress', { AllocationId: String(alloc.allocationId), InstanceId: b });
    expect((await describeOne(b)).ipAddress).toBe(eip);
    expect((await describeOne(a)).ipAddress).toBe('198.51.100.10');
    const listed = await addresses();
    expect(listed).toEqual([expect.objectContaining({ publicIp: eip, instanceId: b, domain: 'standard', privateIpAddress: '172.31.0.67' })]);
    expect((await cloud.ec2.call('DescribeAddresses', { 'PublicIp.1': '203.0.113.1' })).code).toBe('InvalidAddress.NotFound');
    expect((await cloud.ec2.call('AssociateAddress', { PublicIp: '198.51.100.10', InstanceId: b })).code).toBe('InvalidAddress.NotFound');
    expect((await cloud.ec2.call('AssociateAddress', { PublicIp: eip, InstanceId: 'i-00000000' })).code).toBe('InvalidInstanceID.NotFound');
    expect((await cloud.ec2.call('ReleaseAddress', { AllocationId: 'eipalloc-00000000' })).code).toBe('InvalidAllocationID.NotFound');
    expect((await cloud.ec2.call('DisassociateAddress', { AssociationId: 'eipassoc-00000000' })).code).toBe('InvalidAssociationID.NotFound');
    await cloud.ec2.ok('DisassociateAddress', { PublicIp: eip });
    expect((await addresses())[0]!.instanceId).toBeUndefined();
    await cloud.ec2.ok('ReleaseAddress', { PublicIp: eip });
    expect(await addresses()).toEqual([]);
  });

  it('terminating an instance releases its auto-assigned address and disassociates its elastic one', async () => {
    const eip = String((await cloud.ec2.ok('AllocateAddress')).publicIp);
    await cloud.ec2.ok('AssociateAddress', { PublicIp: eip, InstanceId: a });
    await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': a });
    await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': b });
    await eventually('addresses released', async () => {
      await cloud.poll();
      const l = await addresses();
      return l.length === 1 && l[0]!.instanceId === undefined ? l : undefined;
    });
    // Both auto-assigned addresses are free: two more can be allocated.
    expect((await cloud.ec2.ok('AllocateAddress')).publicIp).toBeDefined();
    expect((await cloud.ec2.ok('AllocateAddress')).publicIp).toBeDefined();
    // The administrator's verbose listing (euca-describe-addresses verbose) shows the whole pool and who holds what.
    const all = items((await cloud.ec2.ok('DescribeAddresses', { 'PublicIp.1': 'verbose' })).addressesSet);
    expect(all.map((x) => x.publicIp)).toEqual(['198.51.100.10', '198.51.100.11', '198.51.100.12']);
    expect(all.every((x) => String(x.instanceId).startsWith('available ('))).toBe(true);
  });
});

describe('SYSTEM mode', () => {
  it('gives instances a MAC only: addresses come from the site\'s DHCP, and there are no public ones', async () => {
    const sys = await startTestCloud({ clc: { VNET_MODE: 'SYSTEM' }, cc: { VNET_MODE: 'SYSTEM' } });
    try {
      const img = await sys.registerImage('img');
      const id = String(items((await sys.ec2.ok('RunInstances', { ImageId: img, MinCount: 1, MaxCount: 1 })).instancesSet)[0]!.instanceId);
      const row = sys.clc.db.prepare('SELECT mac_address, private_ip, public_ip FROM instances WHERE instance_id = ?').get(id) as Record<string, string | null>;
      expect(row.mac_address).toBe(`d0:0d:${id.slice(2).match(/../g)!.join(':')}`);
      expect(row.private_ip).toBeNull();
      expect(row.public_ip).toBeNull();
      // No elastic IPs in SYSTEM mode (Eucalyptus has none there either): refused as unsupported, not as a full pool.
      expect((await sys.ec2.call('AllocateAddress')).code).toBe('UnsupportedOperation');
      expect((await sys.ec2.call('AssociateAddress', { PublicIp: '198.51.100.10', InstanceId: id })).code).toBe('UnsupportedOperation');
    } finally {
      await sys.stop();
    }
  });
});
