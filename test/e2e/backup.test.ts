// `mallee backup` of a running cloud under load and `mallee restore` into a fresh home: the restored
// cloud comes up (on other ports, beside the first) with the same accounts, images, key pairs,
// instance records, properties and Walrus objects; restore refuses running daemons, a home that
// already holds a cloud (unless --force, which moves it aside) and a damaged backup.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ec2Client } from './helpers/ec2-client.js';
import { clientEnv, freePortBase, mallee, parseEucarc, runTool, type Cloud, startCloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

let cloud: Cloud;
let restoredHome: string;
const scratch: string[] = [];
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  if (restoredHome) await mallee(['down', '--home', restoredHome]).catch(() => {});
  await cloud?.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

const temp = (prefix: string) => {
  const d = mkdtempSync(join('/tmp', prefix));
  scratch.push(d);
  return d;
};
type Item = Record<string, unknown>;
const items = (v: unknown): Item[] => ((v as { item?: Item[] } | undefined)?.item ?? []);
const keyNames = async (c: Ec2Client) => items((await c.ok('DescribeKeyPairs')).keySet).map((k) => String(k.keyName));
const imageIds = async (c: Ec2Client) => items((await c.ok('DescribeImages', { 'Owner.1': 'self' })).imagesSet).map((i) => String(i.imageId)).sort();
const instanceIds = async (c: Ec2Client) => items((await c.ok('DescribeInstances')).reservationSet).flatMap((r) => items(r.instancesSet).map((i) => String(i.instanceId))).sort();
const s3 = async (env: Record<string, string>, ...args: string[]) => {
  const r = await runTool('aws', ['--endpoint-url', env.S3_URL!, '--region', env.AWS_DEFAULT_REGION!, 's3', ...args], clientEnv(env));
  if (r.code !== 0) throw new Error(`aws s3 ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

describe('backup and restore of the cloud itself', () => {
  let backupDir: string;
  const before = { accounts: '', images: [] as string[], instances: [] as string[], keys: [] as string[] };

  it('backs up a running cloud while clients keep writing to it, with per-database progress and a checksummed manifest', async () => {
    const c = cloud.client;
    await cloud.mallee(['account', 'create', 'backup-tenant']);
    await cloud.mallee(['property', 'cloud.vmstate.user_data_max_size_kb=24']);
    const image = await registerTestImage(cloud, 'bk-images/img.manifest.xml', 'bk-image');
    await c.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2 });
    for (let i = 0; i < 5; i++) await c.ok('CreateKeyPair', { KeyName: `before-${i}` });
    await s3(cloud.env, 'mb', 's3://bk-bucket');
    const payload = join(temp('mallee-bk-obj-'), 'object.txt');
    writeFileSync(payload, 'kept across a restore\n');
    await s3(cloud.env, 'cp', payload, 's3://bk-bucket/object.txt');
    before.accounts = (await cloud.mallee(['account', 'list', '-o', 'json'])).stdout;
    before.images = await imageIds(c);
    before.instances = await instanceIds(c);
    before.keys = await keyNames(c);

    // Load: four writers creating key pairs (clc writes) for as long as the backup runs.
    let stop = false;
    let written = 0;
    const writers = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; !stop; i++) {
        if ((await c.call('CreateKeyPair', { KeyName: `load-${w}-${i}` })).status === 200) written++;
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    backupDir = join(temp('mallee-bk-'), 'backup');
    const started = written;
    let out: string;
    try {
      out = (await cloud.mallee(['backup', '--out', backupDir, '--objects'])).stdout;
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    expect(written - started).toBeGreaterThan(0); // the cloud took writes while the backup ran
    expect(out).toMatch(/^clc\.sqlite: \d+ pages, .*schema \d+ \(live snapshot\)$/m);
    expect(out).toMatch(/^walrus\.sqlite: .*\(live snapshot\)$/m);
    // The test's own object, and the image bundle's part and manifest.
    expect(out).toMatch(/^objects: 3 blobs/m);
    expect(out).toMatch(/backup written to /);
    const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8')) as { files: { path: string; sha256: string }[] };
    expect(manifest.files.map((f) => f.path)).toEqual(expect.arrayContaining(['clc.sqlite', 'walrus.sqlite', 'cc.sqlite', 'nc.sqlite', 'keys/admin.key', 'mallee.conf']));
    expect(readdirSync(backupDir).filter((f) => f.endsWith('-wal'))).toEqual([]);
  });

  it('restore refuses a home whose daemons run, and a damaged backup', async () => {
    await expect(cloud.mallee(['restore', backupDir])).rejects.toThrow(/clc, walrus, (sc, )?cc, nc(, sc)? are running in .*: stop them first/);
    const damaged = join(temp('mallee-bk-bad-'), 'copy');
    await runTool('cp', ['-r', backupDir, damaged], process.env);
    const f = join(damaged, 'clc.sqlite');
    const bytes = readFileSync(f);
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0xff;
    writeFileSync(f, bytes);
    await expect(mallee(['restore', damaged, '--home', temp('mallee-bk-empty-')])).rejects.toThrow(/backup in .* is damaged: clc\.sqlite/);
  });

  it('a fresh home restored from it comes up beside the original with the same accounts, images, key pairs, instances, properties and objects', async () => {
    restoredHome = temp('mallee-restored-');
    const restored = (await mallee(['restore', backupDir, '--home', restoredHome])).stdout;
    expect(restored).toMatch(/checksums verified/);
    expect(restored).toMatch(/restored clc\.sqlite \(schema \d+\), walrus\.sqlite/);
    expect(readFileSync(join(restoredHome, 'mallee.conf'), 'utf8')).toContain(`INSTANCE_PATH="${restoredHome}/instances"`);
    await mallee(['up', '--home', restoredHome, '--detach', '--port-base', String(await freePortBase())]);
    const env = parseEucarc(join(restoredHome, 'eucarc'));
    const c = new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!);
    expect(env.AWS_ACCESS_KEY_ID).toBe(cloud.env.AWS_ACCESS_KEY_ID); // the same admin identity
    expect((await mallee(['account', 'list', '-o', 'json', '--home', restoredHome])).stdout).toBe(before.accounts);
    expect(await imageIds(c)).toEqual(before.images);
    expect(await instanceIds(c)).toEqual(before.instances);
    const keys = await keyNames(c);
    expect(keys).toEqual(expect.arrayContaining(before.keys));
    // Key pairs written during the backup are there or not, but never half there.
    for (const k of items((await c.ok('DescribeKeyPairs')).keySet)) expect(String(k.keyFingerprint)).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
    const prop = JSON.parse((await mallee(['property', 'cloud.vmstate.user_data_max_size_kb', '-o', 'json', '--home', restoredHome])).stdout) as { value: string }[];
    expect(prop[0]!.value).toBe('24');
    const local = join(temp('mallee-bk-get-'), 'got.txt');
    await s3(env, 'cp', 's3://bk-bucket/object.txt', local);
    expect(readFileSync(local, 'utf8')).toBe('kept across a restore\n');
  });

  it('restore over a stopped home that holds a cloud needs --force, and moves what it replaces aside', async () => {
    await mallee(['down', '--home', restoredHome]);
    await expect(mallee(['restore', backupDir, '--home', restoredHome])).rejects.toThrow(/already holds a cloud .*--force/);
    const forced = (await mallee(['restore', backupDir, '--home', restoredHome, '--force'])).stdout;
    const aside = /moved what the restore replaces to (\S+)/.exec(forced)?.[1];
    expect(aside).toBeDefined();
    expect(existsSync(join(aside!, 'clc.sqlite'))).toBe(true);
    expect(forced).toMatch(/kept .*mallee\.conf; the backup's is beside it/);
  });
});
