// The web console in a real browser (headless Debian Chromium, playwright-core) against an
// all-in-one cloud (simulated hypervisor): sign in with an account's keys, key pair, security group
// rule, launch an instance and watch it reach running, console output, volumes and elastic IPs
// (or their "not available" note while the cloud lacks them), upload and download an object, sign
// out; the cloud admin's pages; and another account sees none of it. Screenshots of every main page
// go to test-output/console/.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Ec2Client, instancesOf } from './helpers/ec2-client.js';
import { parseEucarc, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';
import { browserMissing, launchBrowser, screenshot } from './helpers/browser.js';

const missing = browserMissing();
if (missing) console.warn(`console.test.ts skipped: ${missing}`);

interface Keys { accessKeyId: string; secretAccessKey: string }

let cloud: Cloud;
let browser: Browser;
let a: Keys;
let b: Keys;
let aClient: Ec2Client;
let imageId: string;
let instanceId = '';
const bucket = `console-a-${Date.now().toString(36)}`;
const small = Buffer.from('hello from the console test\n');
const bigger = Buffer.alloc(3 << 20, 7);

const eucarcs: Record<string, Record<string, string>> = {};
async function accountKeys(name: string): Promise<Keys> {
  await cloud.mallee(['account', 'create', name]);
  const out = `${cloud.home}/${name}-creds`;
  await cloud.mallee(['credentials', '--account', name, '--out', out]);
  const env = parseEucarc(`${out}/eucarc`);
  eucarcs[name] = env;
  return { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! };
}

async function signIn(context: BrowserContext, keys: Keys): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${new URL(cloud.ec2Url).origin}/console/`);
  await page.getByLabel('Access key ID').fill(keys.accessKeyId);
  await page.getByLabel('Secret access key').fill(keys.secretAccessKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  return page;
}

const go = async (page: Page, link: string) => {
  await page.getByRole('navigation', { name: 'console pages' }).getByRole('link', { name: link, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: link === 'Volumes & snapshots' ? 'Volumes' : link }).waitFor();
};

beforeAll(async () => {
  if (missing) return;
  // Elastic IPs need a public pool: MANAGED with a private interface that does not exist keeps the
  // network state in the cc and touches nothing on this host (no address of the pool is ever reached).
  cloud = await startCloud({ conf: { CONSOLE_METRICS_INTERVAL: 1, VNET_MODE: 'MANAGED', VNET_PUBLICIPS: '198.51.100.30-198.51.100.31', VNET_PRIVINTERFACE: 'mallee-none0' } });
  a = await accountKeys('console-a');
  b = await accountKeys('console-b');
  aClient = cloud.client.withCredentials(a);
  imageId = await registerTestImage(cloud, 'console-a-images/img.manifest.xml', 'console-image', { env: eucarcs['console-a']!, client: aClient });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  await cloud?.stop();
});

describe.skipIf(!!missing)('web console in headless Chromium', () => {
  let ctx: BrowserContext;
  let page: Page;

  it('signs in with an access key pair; wrong keys are refused with the API error', async () => {
    ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1366, height: 768 } });
    const bad = await ctx.newPage();
    await bad.goto(`${new URL(cloud.ec2Url).origin}/console/`);
    await expect.poll(() => bad.getByLabel('Region').inputValue()).toBe(cloud.region);
    await screenshot(bad, '01-sign-in');
    await bad.getByLabel('Access key ID').fill(a.accessKeyId);
    await bad.getByLabel('Secret access key').fill('not-the-secret');
    await bad.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => bad.getByRole('alert').textContent()).toContain('SignatureDoesNotMatch');
    await bad.close();

    page = await signIn(ctx, a);
    expect(await page.getByTestId('who').textContent()).toContain('console-a');
    // Not the admin: no admin pages.
    expect(await page.getByRole('link', { name: 'Services' }).count()).toBe(0);
  });

  it('creates a key pair and downloads its private key', async () => {
    await go(page, 'Key pairs');
    await page.getByRole('button', { name: 'Create key pair' }).click();
    await page.getByLabel('Name').fill('console-key');
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Create and download' }).click();
    const file = await download;
    expect(file.suggestedFilename()).toBe('console-key.pem');
    expect(readFileSync((await file.path())!, 'utf8')).toMatch(/^-----BEGIN (RSA )?PRIVATE KEY-----/);
    await page.locator('tr[data-key="console-key"]').waitFor();
    await screenshot(page, '02-key-pairs');
  });

  it('creates a security group and adds an ingress rule with the rules editor', async () => {
    await go(page, 'Security groups');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByLabel('Name').fill('web');
    await page.getByLabel('Description').fill('web servers');
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    await page.getByRole('heading', { name: 'Inbound rules of web' }).waitFor();
    await page.getByLabel('From port').fill('80');
    await page.getByLabel('To port').fill('80');
    await page.getByRole('button', { name: 'Add rule' }).click();
    const rules = page.locator('table', { has: page.locator('caption', { hasText: /^Rules of sg-/ }) });
    await rules.locator('tr', { hasText: '0.0.0.0/0' }).filter({ hasText: '80' }).waitFor();
    await screenshot(page, '03-security-groups');
    const groups = await aClient.ok('DescribeSecurityGroups', { 'GroupName.1': 'web' });
    expect(JSON.stringify(groups)).toContain('0.0.0.0/0');
  });

  it('lists the images the account may launch', async () => {
    await go(page, 'Images');
    await page.locator(`tr[data-key="${imageId}"]`).waitFor();
    await screenshot(page, '04-images');
  });

  it('launches an instance with the wizard and sees it running without reloading', async () => {
    await go(page, 'Instances');
    await page.getByRole('button', { name: 'Launch instances' }).click();
    await page.getByLabel('Machine image').selectOption(imageId);
    await page.getByLabel('Instance type').selectOption('t1.micro');
    await page.getByLabel('Key pair').selectOption('console-key');
    await page.getByLabel('Security groups').selectOption({ label: (await page.getByLabel('Security groups').locator('option', { hasText: 'web' }).textContent())! });
    await page.getByLabel('User data (text; sent base64-encoded)').fill('#!/bin/sh\necho hello\n');
    await screenshot(page, '05-launch-wizard');
    await page.getByRole('button', { name: 'Launch', exact: true }).click();
    const row = page.locator('tr[data-key^="i-"]');
    await row.first().waitFor();
    instanceId = (await row.first().getAttribute('data-key'))!;
    await row.first().locator('.state-running').waitFor({ timeout: 60_000 });
    await screenshot(page, '06-instances');
    const [inst] = instancesOf(await aClient.ok('DescribeInstances', { 'InstanceId.1': instanceId }));
    expect(inst?.state).toBe('running');
    expect(inst?.item.keyName).toBe('console-key');
    expect(JSON.stringify(inst?.item.groupSet ?? '') + JSON.stringify(inst?.item)).toContain('web');
  });

  it("shows the instance's console output", async () => {
    await page.getByLabel(`select ${instanceId}`).check();
    await page.getByRole('button', { name: 'Console output' }).click();
    await page.getByRole('heading', { name: `Console output of ${instanceId}` }).waitFor();
    await expect.poll(() => page.getByLabel('console output', { exact: true }).textContent()).not.toBe('Loading…');
    await screenshot(page, '07-console-output');
    await page.getByRole('button', { name: 'close' }).click();
  });

  it('creates a volume and attaches it to the running instance', async () => {
    await go(page, 'Volumes & snapshots');
    await page.getByRole('button', { name: 'Create volume' }).click();
    await page.getByLabel('Size (GiB)').fill('1');
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    const vol = page.locator('tr[data-key^="vol-"]').first();
    await vol.locator('.state-available').waitFor({ timeout: 60_000 });
    const volumeId = (await vol.getAttribute('data-key'))!;
    await page.getByLabel(`select ${volumeId}`).check();
    await page.getByRole('button', { name: 'Attach', exact: true }).click();
    await page.getByLabel('Instance').selectOption(instanceId);
    await page.getByRole('button', { name: 'Attach', exact: true }).last().click();
    await vol.locator('td', { hasText: instanceId }).waitFor({ timeout: 60_000 });
    await screenshot(page, '08-volumes');
  });

  it('allocates an address and associates it with the instance', async () => {
    await go(page, 'Elastic IPs');
    await page.getByRole('button', { name: 'Allocate address' }).click();
    const addr = page.locator('tr[data-key]').first();
    await addr.waitFor();
    const ip = (await addr.getAttribute('data-key'))!;
    await page.getByLabel(`select ${ip}`).check();
    await page.getByRole('button', { name: 'Associate', exact: true }).click();
    await page.getByLabel('Instance').selectOption(instanceId);
    await page.getByRole('button', { name: 'Associate', exact: true }).last().click();
    await addr.locator('td', { hasText: instanceId }).waitFor({ timeout: 60_000 });
    await screenshot(page, '09-addresses');
  });

  it('creates a bucket, uploads two files with progress and downloads one back intact', async () => {
    await go(page, 'Buckets');
    await page.getByRole('button', { name: 'Create bucket' }).click();
    await page.getByLabel('Bucket name').fill(bucket);
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    await page.getByRole('link', { name: bucket }).click();
    await page.getByRole('heading', { name: `Bucket ${bucket}` }).waitFor();
    await page.getByLabel('Upload files').setInputFiles([
      { name: 'hello.txt', mimeType: 'text/plain', buffer: small },
      { name: 'three-mib.bin', mimeType: 'application/octet-stream', buffer: bigger },
    ]);
    await expect.poll(() => page.locator('.uploads li:not([data-state="uploading"])').count(), { timeout: 60_000 }).toBe(2);
    expect(await page.locator('.uploads').textContent()).not.toContain('failed');
    expect(await page.getByLabel('upload of three-mib.bin').getAttribute('value')).toBe(String(bigger.length));
    const row = page.locator('tr[data-key="hello.txt"]');
    await row.waitFor();
    await screenshot(page, '10-objects');
    const download = page.waitForEvent('download');
    await row.getByRole('button', { name: 'Download' }).click();
    const file = await download;
    expect(file.suggestedFilename()).toBe('hello.txt');
    expect(readFileSync((await file.path())!)).toEqual(small);
    await go(page, 'Buckets');
    await page.locator(`tr[data-key="${bucket}"]`).waitFor();
    await screenshot(page, '11-buckets');
  });

  it('signs out: the keys are gone from the tab', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate("sessionStorage.length")).toBe(0);
    await ctx.close();
  });

  it("the cloud admin sees every component's health, capacity per zone and type, and metrics plots", async () => {
    const adminCtx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const p = await signIn(adminCtx, { accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY! });
    await go(p, 'Services');
    await expect.poll(() => p.getByRole('status').first().textContent()).toMatch(/all \d+ components ENABLED/);
    for (const type of ['clc', 'walrus', 'cc', 'nc']) expect(await p.locator('tbody tr td:first-child', { hasText: new RegExp(`^${type}$`) }).count()).toBeGreaterThan(0);
    await screenshot(p, '12-admin-services');
    await go(p, 'Capacity');
    const micro = p.locator('tr[data-key="t1.micro"]');
    await micro.waitFor();
    expect(await micro.textContent()).toMatch(/\d+ \/ \d+/);
    await screenshot(p, '13-admin-capacity');
    await go(p, 'Metrics');
    await expect.poll(() => p.locator('figure.chart').count(), { timeout: 30_000 }).toBe(6);
    // Latency comes from the difference of two readings, so the clc needs requests between them: make some
    // while waiting for a plotted point (the page's own calls alone left the clc at "–" once on a loaded host).
    await expect.poll(async () => {
      await cloud.client.call('DescribeAvailabilityZones', {});
      return (await p.locator('figure.chart div[role="img"]').first().getAttribute('aria-label')) ?? '';
    }, { timeout: 30_000 }).toMatch(/clc: \d/);
    await screenshot(p, '14-admin-metrics');
    await adminCtx.close();
  });

  it("another account sees none of it: no instances, key pairs, groups or buckets of console-a, and A's bucket is AccessDenied", async () => {
    const bCtx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const p = await signIn(bCtx, b);
    await expect.poll(() => p.getByTestId('instance-summary').textContent()).toMatch(/^0 instances/);
    expect(await p.locator(`tr[data-key="${instanceId}"]`).count()).toBe(0);
    await go(p, 'Key pairs');
    await p.getByText('No key pairs.').waitFor();
    await go(p, 'Security groups');
    await p.locator('caption', { hasText: 'Security groups' }).waitFor();
    await expect.poll(() => p.locator('tbody tr').first().textContent()).not.toBe('Loading…');
    expect(await p.locator('td', { hasText: /^web$/ }).count()).toBe(0);
    await go(p, 'Buckets');
    await p.getByText('No buckets.').waitFor();
    await p.goto(`${new URL(cloud.ec2Url).origin}/console/#/buckets/${bucket}`);
    await expect.poll(() => p.getByRole('alert').first().textContent()).toContain('AccessDenied');
    await screenshot(p, '15-other-account');
    await bCtx.close();
  });
});
