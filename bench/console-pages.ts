// Benchmark (not a test): how long each web console page takes to load, fresh, in headless Debian
// Chromium, with 1,000 instances in the account (simulated hypervisor), against the peer that bounds
// it: the same EC2 call(s) the page waits on, made directly from Node in the same run. Writes
// bench/results/console-pages.md.   npx tsx bench/console-pages.ts   (MALLEE_BENCH_INSTANCES=1000 MALLEE_BENCH_SAMPLES=7)
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ec2Client, instancesOf } from '../test/e2e/helpers/ec2-client.js';
import { freePortBase, mallee, parseEucarc, repoRoot, sleep } from '../test/e2e/helpers/cloud.js';
import { launchBrowser } from '../test/e2e/helpers/browser.js';

const N = Number(process.env.MALLEE_BENCH_INSTANCES ?? 1000);
const SAMPLES = Number(process.env.MALLEE_BENCH_SAMPLES ?? 7);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const home = mkdtempSync(join(tmpdir(), 'mallee-bench-console-'));
const base = await freePortBase();
writeFileSync(join(home, 'mallee.conf'), [
  'HYPERVISOR="simulated"', `CLC_PORT="${base}"`, `CC_PORT="${base + 1}"`, `NC_PORT="${base + 2}"`, `WALRUS_PORT="${base + 3}"`, `SC_PORT="${base + 4}"`,
  `SIM_CORES="${N * 2}"`, `SIM_MEM="${N * 2048}"`, `SIM_DISK="${N * 20}"`, 'SIM_BOOT_DELAY="50"', 'LOG_LEVEL="warn"', `INSTANCE_PATH="${home}/instances"`, '',
].join('\n'));
await mallee(['up', '--home', home, '--detach']);
const env = parseEucarc(join(home, 'eucarc'));
const keys = { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! };
const client = new Ec2Client(env.EC2_URL!, keys, env.AWS_DEFAULT_REGION!, undefined, 600_000);
const origin = new URL(env.EC2_URL!).origin;
const browser = await launchBrowser();
try {
  const imageId = String((await client.ok('RegisterImage', { ImageLocation: 'bench/img.manifest.xml', Name: 'bench' })).imageId);
  for (let launched = 0; launched < N; launched += 250) {
    const n = Math.min(250, N - launched);
    await client.ok('RunInstances', { ImageId: imageId, MinCount: n, MaxCount: n, InstanceType: 't1.micro' });
  }
  for (let i = 0; ; i++) {
    const running = instancesOf(await client.ok('DescribeInstances')).filter((x) => x.state === 'running').length;
    if (running >= N) break;
    if (i > 600) throw new Error(`only ${running} of ${N} instances running`);
    await sleep(1000);
  }
  const page = await (await browser.newContext({ viewport: { width: 1366, height: 768 } })).newPage();
  await page.goto(`${origin}/console/`);
  await page.getByLabel('Access key ID').fill(keys.accessKeyId);
  await page.getByLabel('Secret access key').fill(keys.secretAccessKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();

  // Each page: what shows it has its data, and the EC2/S3 calls it waits on (the peer).
  const pages: { id: string; ready: () => Promise<unknown>; api: () => Promise<unknown> }[] = [
    { id: 'instances', ready: () => page.getByTestId('instance-summary').filter({ hasText: new RegExp(`^${N} instances`) }).waitFor(), api: () => client.send('DescribeInstances', { MaxResults: 1000 }) },
    { id: 'keypairs', ready: () => page.getByText('No key pairs.').waitFor(), api: () => client.send('DescribeKeyPairs') },
    { id: 'groups', ready: () => page.locator('tr[data-key^="sg-"]').first().waitFor(), api: () => client.send('DescribeSecurityGroups') },
    { id: 'images', ready: () => page.locator(`tr[data-key="${imageId}"]`).waitFor(), api: () => client.send('DescribeImages', { 'ExecutableBy.1': 'self' }) },
    { id: 'volumes', ready: () => page.locator('.note.unavailable, tr[data-key^="vol-"], td.empty:text("No volumes.")').first().waitFor(), api: () => client.send('DescribeVolumes') },
    { id: 'addresses', ready: () => page.locator('.note.unavailable, td.empty:text("No addresses allocated.")').first().waitFor(), api: () => client.send('DescribeAddresses') },
    { id: 'buckets', ready: () => page.getByText('No buckets.').waitFor(), api: () => fetch(`${origin}/console/api/info`) },
    { id: 'services', ready: () => page.getByRole('status').filter({ hasText: /components/ }).waitFor(), api: () => fetch(`${origin}/healthz`) },
    { id: 'capacity', ready: () => page.locator('tr[data-key="t1.micro"]').waitFor(), api: () => client.send('DescribeAvailabilityZones', { 'ZoneName.1': 'verbose' }) },
  ];
  const rows: string[] = [];
  for (const p of pages) {
    const pageMs: number[] = [];
    const apiMs: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t0 = performance.now();
      await p.api();
      apiMs.push(performance.now() - t0);
      await page.goto('about:blank');
      const t1 = performance.now();
      await page.goto(`${origin}/console/#/${p.id}`);
      await p.ready();
      pageMs.push(performance.now() - t1);
    }
    rows.push(`| ${p.id} | ${median(pageMs).toFixed(0)} | ${Math.max(...pageMs).toFixed(0)} | ${median(apiMs).toFixed(0)} |`);
    console.log(rows.at(-1));
  }
  mkdirSync(join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(join(repoRoot, 'bench/results/console-pages.md'), [
    '# Web console page loads',
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; all-in-one, simulated hypervisor, **${N} running instances** in the account;`,
    `headless Debian Chromium (playwright-core), ${SAMPLES} fresh loads per page (about:blank → /console/#/page, bundle from the clc, until the page shows its data).`,
    'Peer: the EC2 call the page waits on, made directly from Node with the same SigV4 client (for the instances page: one 1,000-instance DescribeInstances).',
    '',
    '| page | load, median ms | load, worst ms | its API call alone, median ms |',
    '|---|---|---|---|',
    ...rows,
    '',
    'Requirement (issue 10): every page under 1 s with 1,000 instances. Produced by `npx tsx bench/console-pages.ts`.',
    '',
  ].join('\n'));
} finally {
  await browser.close();
  await mallee(['down', '--home', home]).catch(() => {});
  rmSync(home, { recursive: true, force: true });
}
