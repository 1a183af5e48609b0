// boto3 (SigV4, pyenv python) and boto 2 (boto.connect_euca from Debian's python3-boto, system python)
// against a real all-in-one cloud, through the scripts in py/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, runTool, startCloud, type Cloud } from './helpers/cloud.js';
import { uploadTestBundle } from './helpers/images.js';

const py = new URL('./py/', import.meta.url).pathname;
let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
  // The bundles the scripts register (RegisterImage reads and verifies them in Walrus).
  await Promise.all([
    uploadTestBundle(cloud, 'b3-bucket/test.img.manifest.xml'),
    uploadTestBundle(cloud, 'b2v2-bucket/img.manifest.xml'),
    uploadTestBundle(cloud, 'b2v4-bucket/img.manifest.xml'),
  ]);
}, 120_000);
afterAll(async () => {
  await cloud?.stop();
});

async function script(python: string, file: string, tag: string, env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await runTool(python, [py + file], { ...clientEnv(cloud.env), RUN_TAG: tag, ...env });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let summary: Record<string, unknown> = {};
  try {
    summary = JSON.parse(last) as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  if (r.code !== 0 || !summary.ok) throw new Error(`${file} failed (exit ${r.code}): ${summary.failed ?? ''}\n${r.stdout}\n${r.stderr}\n${cloud.logs()}`);
  return summary;
}

describe('python clients drive an all-in-one cloud', () => {
  it('boto3 creates a key pair and group, registers an image, runs 3 instances, filters, tags, reads console output and terminates', async () => {
    const s = await script('python3', 'boto3_flow.py', 'b3');
    expect(s.instanceIds).toHaveLength(3);
  });

  it('boto 2 (connect_euca, SigV2 as boto 2 signed for Eucalyptus) is refused with a wrong secret, describes zones, runs 2 instances, filters and terminates them', async () => {
    const s = await script('/usr/bin/python3', 'boto2_flow.py', 'b2v2', { SIGV2: '1' });
    expect(s.auth).toBe('QuerySignatureV2AuthHandler');
    expect(s.instanceIds).toHaveLength(2);
    expect((s.zones as string[]).length).toBeGreaterThan(0);
  });

  it("boto 2 (connect_euca with boto 2.49's default SigV4) does the same", async () => {
    const s = await script('/usr/bin/python3', 'boto2_flow.py', 'b2v4');
    expect(s.auth).toBe('HmacAuthV4Handler');
    expect(s.instanceIds).toHaveLength(2);
  });
});
