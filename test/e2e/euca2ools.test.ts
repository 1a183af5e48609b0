// euca2ools 3.4 (../shared/tools/euca, SigV4 for the eucarc's region) against a real all-in-one cloud,
// including Eucalyptus's own instance-type extensions.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, repoRoot, runTool, startCloud, type Cloud } from './helpers/cloud.js';

const eucaWrapper = join(repoRoot, '../shared/tools/euca');
let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  await cloud?.stop();
});

async function euca(cmd: string, args: string[], env: NodeJS.ProcessEnv = clientEnv(cloud.env)): Promise<string> {
  const r = await runTool(eucaWrapper, [cmd, ...args], env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${r.stdout}\n${cloud.logs()}`);
  return r.stdout;
}
const instanceIds = (out: string) => [...out.matchAll(/^INSTANCE\s+(i-[0-9a-f]+)/gm)].map((m) => m[1]!).sort();

describe('euca2ools drive an all-in-one cloud', () => {
  it('reads the euca2ools.ini that mallee writes (region, user, keys) with no credentials in the environment', async () => {
    const env = clientEnv({});
    env.EUCA_CONFIG_PATH = join(cloud.home, 'euca2ools.ini');
    const out = await euca('euca-describe-availability-zones', [], env);
    expect(out).toMatch(/^AVAILABILITYZONE\s+\S+/m);
  });

  it('creates a key pair and a group with a rule, registers an image, runs 3 instances, filters, tags, reads console output and terminates', async () => {
    expect(await euca('euca-create-keypair', ['euca-key'])).toMatch(/KEYPAIR\s+euca-key\s+[0-9a-f:]+/);
    await euca('euca-create-group', ['-d', 'euca group', 'euca-web']);
    await euca('euca-authorize', ['-P', 'tcp', '-p', '22', '-s', '0.0.0.0/0', 'euca-web']);
    expect(await euca('euca-describe-group', ['euca-web'])).toMatch(/PERMISSION.*tcp\s+22\s+22/);
    // The Eucalyptus way: euca-bundle-image with the certificates of the eucarc, euca-upload-bundle, euca-register.
    const dir = mkdtempSync(join(cloud.home, 'euca-bundle-'));
    writeFileSync(join(dir, 'img'), randomBytes(256 * 1024));
    await euca('euca-bundle-image', ['-i', join(dir, 'img'), '-r', 'x86_64', '-d', join(dir, 'out')]);
    await euca('euca-upload-bundle', ['-b', 'euca-bucket', '-m', join(dir, 'out', 'img.manifest.xml')]);
    const image = /IMAGE\s+([ae]mi-[0-9a-f]+)/.exec(await euca('euca-register', ['-n', 'euca-image', 'euca-bucket/img.manifest.xml']))?.[1];
    expect(image).toBeDefined();

    const ids = instanceIds(await euca('euca-run-instances', ['-n', '3', '-k', 'euca-key', '-g', 'euca-web', '-t', 'm1.small', image!]));
    expect(ids).toHaveLength(3);
    await eventually('three running instances', async () => {
      const out = await euca('euca-describe-instances', ['--filter', 'instance-state-name=running', ...ids]);
      return instanceIds(out).length === 3 ? true : undefined;
    }, 60_000);
    expect(instanceIds(await euca('euca-describe-instances', ['--filter', 'key-name=euca-key', '--filter', 'instance-type=m1.small']))).toEqual(ids);

    await euca('euca-create-tags', ['--tag', 'role=web', ids[2]!]);
    expect(instanceIds(await euca('euca-describe-instances', ['--filter', 'tag:role=web']))).toEqual([ids[2]]);
    expect(await euca('euca-describe-tags', ['--filter', `resource-id=${ids[2]}`])).toMatch(new RegExp(`TAG\\s+instance\\s+${ids[2]}\\s+role\\s+web`));

    expect(await euca('euca-get-console-output', [ids[0]!])).toContain(ids[0]!);

    await euca('euca-terminate-instances', ids);
    await eventually('three terminated instances', async () => {
      const out = await euca('euca-describe-instances', ids);
      return (out.match(/\bterminated\b/g) ?? []).length >= 3 ? true : undefined;
    }, 60_000);
  });

  it('euca-describe-instance-types lists the types and euca-modify-instance-type sets small to 256 MB', async () => {
    const before = await euca('euca-describe-instance-types', ['--show-capacity']);
    expect(before).toMatch(/m1\.small/);
    const modified = await euca('euca-modify-instance-type', ['-m', '256', 'm1.small']);
    expect(modified).toMatch(/INSTANCETYPE\s+m1\.small\s+\d+\s+256\b/);
    const row = (await euca('euca-describe-instance-types', ['m1.small'])).split('\n').find((l) => /\bm1\.small\b/.test(l));
    expect(row?.split(/\s+/)).toContain('256');
  });
});
