// The instance metadata service (EC2's 169.254.169.254, which the CC's DNAT sends here): the
// latest/meta-data tree, user-data and the identity document, for the instance whose private
// address the request comes from — so an instance reads only its own. Who asks is decided by the
// caller (instanceFor): the cc answers only a live instance's private address that reached the
// gateway of that instance's own network (where the DNAT of 169.254.169.254 leads); any other caller
// gets 404. Any version path (2009-04-04, latest, …) serves the same tree, and IMDSv2's token PUT is
// answered (tokens are not required).
import { randomBytes } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { privateDnsName } from '@mallee/vnet';
import type { InstanceSpec } from '@mallee/wire';

export interface MetadataInstance {
  spec: InstanceSpec;
  /** Its public address now (it moves with AssignAddress). */
  publicIp?: string;
  zone: string;
  region: string;
}

export const METADATA_VERSIONS = ['1.0', '2007-01-19', '2007-03-01', '2007-08-29', '2007-10-10', '2007-12-15', '2008-02-01', '2008-09-01', '2009-04-04', '2011-01-01', '2011-05-01', '2012-01-12', '2014-02-25', '2014-11-05', '2015-10-20', '2016-04-19', '2016-06-30', '2016-09-02', 'latest'];

type Tree = { [name: string]: string | Tree };

/** The meta-data tree of one instance, as EC2 lays it out (Eucalyptus: sda1 root, sda2 swap, sda3 ephemeral0). */
export function metadataTree(m: MetadataInstance): Tree {
  const s = m.spec;
  const local = s.privateIp ?? '';
  const tree: Tree = {
    'ami-id': s.imageId,
    'ami-launch-index': String(s.launchIndex),
    'ami-manifest-path': s.imageLocation || '(unknown)',
    'block-device-mapping': { ami: 'sda1', root: '/dev/sda1', swap: 'sda2', ephemeral0: 'sda3' },
    hostname: privateDnsName(local, m.region),
    'instance-id': s.instanceId,
    'instance-type': s.vmType.name,
    'local-hostname': privateDnsName(local, m.region),
    'local-ipv4': local,
    mac: s.macAddress ?? '',
    placement: { 'availability-zone': m.zone },
    'reservation-id': s.reservationId,
    'security-groups': s.groupNames.join('\n'),
  };
  if (s.kernelId) tree['kernel-id'] = s.kernelId;
  if (s.ramdiskId) tree['ramdisk-id'] = s.ramdiskId;
  if (m.publicIp) {
    tree['public-ipv4'] = m.publicIp;
    tree['public-hostname'] = m.publicIp;
  }
  if (s.publicKey) tree['public-keys'] = { [`0=${s.keyName ?? 'key'}`]: { 'openssh-key': s.publicKey.trim() + '\n' } };
  return tree;
}

function lookup(tree: Tree, parts: string[]): string | Tree | undefined {
  let node: string | Tree | undefined = tree;
  for (const p of parts) {
    if (typeof node !== 'object') return undefined;
    // public-keys/0/… names the entry "0=<key name>".
    const key: string | undefined = p in node ? p : Object.keys(node).find((k) => k.split('=')[0] === p);
    node = key === undefined ? undefined : node[key];
  }
  return node;
}

function listing(node: Tree): string {
  // Directories end in "/", except public-keys' "0=<name>" entries, as EC2 lists them.
  return Object.entries(node).map(([k, v]) => (typeof v === 'object' && !k.includes('=') ? `${k}/` : k)).join('\n');
}

/** The instance a request is from: its source address and the local address it reached (both IPv4). */
export type InstanceFor = (caller: string, local: string) => MetadataInstance | undefined;

const v4 = (ip: string | undefined) => (ip ?? '').replace(/^::ffff:/, '');

export function buildMetadataServer(opts: { logger: Logger; instanceFor: InstanceFor }): FastifyInstance {
  const app = Fastify({ loggerInstance: opts.logger, logController: new LogController({ disableRequestLogging: true }) });
  const notFound = (reply: FastifyReply) => reply.code(404).type('text/html').send('<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n');
  const text = (reply: FastifyReply, body: string) => reply.type('text/plain').send(body);

  app.put('/latest/api/token', async (_req, reply) => text(reply, randomBytes(32).toString('base64url')));
  app.get('/', async (_req, reply) => text(reply, METADATA_VERSIONS.join('\n')));
  app.get('/*', async (req, reply) => {
    const path = (req.params as { '*': string })['*'];
    const [version, section, ...rest] = path.split('/');
    if (!version || !METADATA_VERSIONS.includes(version)) return notFound(reply);
    const local = v4(req.socket.localAddress);
    const inst = opts.instanceFor(v4(req.socket.remoteAddress), local);
    if (!inst) {
      req.log.warn({ from: req.socket.remoteAddress, to: local, path }, 'metadata request that is not from a live instance of this cluster on its own network');
      return notFound(reply);
    }
    const userData = inst.spec.userData ? Buffer.from(inst.spec.userData, 'base64') : undefined;
    if (section === undefined || section === '') return text(reply, ['dynamic', 'meta-data', ...(userData ? ['user-data'] : [])].join('\n'));
    if (section === 'user-data') return userData ? reply.type('application/octet-stream').send(userData) : notFound(reply);
    if (section === 'dynamic') {
      const doc = {
        accountId: inst.spec.ownerId, architecture: 'x86_64', availabilityZone: inst.zone, imageId: inst.spec.imageId,
        instanceId: inst.spec.instanceId, instanceType: inst.spec.vmType.name, kernelId: inst.spec.kernelId ?? null,
        pendingTime: new Date().toISOString(), privateIp: inst.spec.privateIp ?? null, ramdiskId: inst.spec.ramdiskId ?? null,
        region: inst.region, version: '2017-09-30',
      };
      const dyn: Tree = { 'instance-identity': { document: JSON.stringify(doc, null, 2) } };
      const node = lookup(dyn, rest.filter(Boolean));
      if (node === undefined) return notFound(reply);
      return text(reply, typeof node === 'object' ? listing(node) : node);
    }
    if (section !== 'meta-data') return notFound(reply);
    const node = lookup(metadataTree(inst), rest.filter(Boolean));
    if (node === undefined) return notFound(reply);
    return text(reply, typeof node === 'object' ? listing(node) : node);
  });
  return app as unknown as FastifyInstance;
}
