// deploy/install.sh into a throwaway root (--root, as DESTDIR): the run-time tree, the command, the
// config written once and never overwritten, the home owned by the daemons' user, systemd units that
// `systemd-analyze verify` accepts (no systemd runs here), a second run that changes nothing; then the
// installed cloud started through the plain supervisor (`mallee supervise`), driven with awscli, a
// daemon killed and brought back, and everything stopped and removed.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, freePortBase, parseEucarc, repoRoot, runTool } from './helpers/cloud.js';

// An existing unprivileged account stands in for the "mallee" user (a --root install creates none).
const USER = 'daemon';
/** What --role all runs here (the sc once services/sc is built). */
const DAEMONS = ['clc', 'walrus', ...(existsSync(join(repoRoot, 'services/sc/dist/src/main.js')) ? ['sc'] : []), 'cc', 'nc'];
let root: string;
let home: string;
let conf: string;
let cli: string;

const install = (...args: string[]) => runTool('bash', [join(repoRoot, 'deploy/install.sh'), '--root', root, '--user', USER, '--no-apt', '--no-build', ...args], process.env, 120_000);
const mallee = async (...args: string[]) => {
  const r = await runTool(process.execPath, [cli, ...args, '--home', home], { ...process.env, MALLEE_HOME: home });
  if (r.code !== 0) throw new Error(`mallee ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
const pidOf = (svc: string) => Number(readFileSync(join(home, 'run', `${svc}.pid`), 'utf8'));
const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const processesUnder = (dir: string) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
  try {
    return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8'));
  } catch {
    return false;
  }
});

beforeAll(() => {
  root = mkdtempSync('/tmp/mallee-install-');
  chmodSync(root, 0o755); // the daemons' user walks into it
  home = join(root, 'var/lib/mallee');
  conf = join(root, 'etc/mallee/mallee.conf');
  cli = join(root, 'opt/mallee/packages/cli/dist/src/main.js');
});
afterAll(async () => {
  if (existsSync(cli)) await runTool(process.execPath, [cli, 'down', '--home', home], process.env).catch(() => {});
  for (const pid of processesUnder(root)) process.kill(Number(pid), 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('deploy/install.sh', () => {
  it('names the Debian packages each role needs', async () => {
    const list = async (role: string) => (await runTool('bash', [join(repoRoot, 'deploy/install.sh'), '--role', role, '--list-packages'], process.env)).stdout.split('\n').filter(Boolean);
    const [front, node, all] = (await Promise.all(['frontend', 'node', 'all'].map(list))) as [string[], string[], string[]];
    expect(front).toEqual(expect.arrayContaining(['tgt', 'dnsmasq-base', 'iptables', 'lvm2']));
    expect(front).not.toContain('qemu-system-x86');
    expect(node).toEqual(expect.arrayContaining(['qemu-system-x86', 'libvirt-daemon-system', 'iptables']));
    expect(node).not.toContain('tgt');
    expect(new Set(all)).toEqual(new Set([...front, ...node]));
    expect((await runTool('bash', [join(repoRoot, 'deploy/install.sh'), '--role', 'cloud'], process.env)).code).toBe(2);
  });

  it('installs the tree, the command, the config, the home and the units for --role all', async () => {
    const r = await install('--role', 'all', '--set', 'LOG_LEVEL=debug');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/install\.sh: \d+ changes \(role all\)/);
    expect(existsSync(cli)).toBe(true);
    expect(existsSync(join(root, 'opt/mallee/node_modules/better-sqlite3/package.json'))).toBe(true);
    expect(existsSync(join(root, 'opt/mallee/node_modules/typescript'))).toBe(false); // run time only
    const wrapper = readFileSync(join(root, 'usr/local/bin/mallee'), 'utf8');
    expect(wrapper).toContain('exec ');
    expect(wrapper).toContain('/opt/mallee/packages/cli/dist/src/main.js "$@"');
    expect(statSync(join(root, 'usr/local/bin/mallee')).mode & 0o111).toBeTruthy();
    const text = readFileSync(conf, 'utf8');
    expect(text).toMatch(/^MALLEE_HOME="\/var\/lib\/mallee"$/m);
    expect(text).toMatch(/^CLC_PORT="8773"$/m);
    // One host: user-mode networking, as `mallee up` writes it; --set lands in the new file.
    expect(text).toMatch(/^VNET_MODE="USERMODE"$/m);
    expect(text).toMatch(/^LOG_LEVEL="debug"$/m);
    expect(readFileSync(join(home, 'mallee.conf'), 'utf8')).toBe(text); // the home's link to it
    const uid = Number(execFileSync('id', ['-u', USER]).toString());
    expect(statSync(home).uid).toBe(uid);
    expect(statSync(join(home, 'keys')).mode & 0o777).toBe(0o700);
    // Passed through, not listed: by QEMU (libvirt-qemu) to the guests' files, by the cc's dnsmasq to its hosts files.
    expect([home, join(home, 'run'), join(home, 'instances')].map((d) => statSync(d).mode & 0o777)).toEqual([0o751, 0o751, 0o751]);
    const units = readdirSync(join(root, 'etc/systemd/system')).sort();
    const scBuilt = existsSync(join(repoRoot, 'services/sc/dist/src/main.js'));
    expect(units).toEqual(['mallee-cc.service', 'mallee-clc.service', 'mallee-nc.service', ...(scBuilt ? ['mallee-sc.service'] : []), 'mallee-walrus.service', 'mallee.target']);
    const clc = readFileSync(join(root, 'etc/systemd/system/mallee-clc.service'), 'utf8');
    expect(clc).toMatch(new RegExp(`^User=${USER}$`, 'm'));
    expect(clc).toMatch(/^ExecStart=\S+ \/opt\/mallee\/services\/clc\/dist\/src\/main\.js --home \/var\/lib\/mallee --conf \/etc\/mallee\/mallee\.conf$/m);
    expect(clc).toMatch(/^Restart=on-failure$/m);
    const nc = readFileSync(join(root, 'etc/systemd/system/mallee-nc.service'), 'utf8');
    expect(nc).toMatch(/^User=root$/m);
    expect(nc).toMatch(/^After=.*libvirtd\.service/m);
    expect(readFileSync(join(root, 'etc/init.d/mallee'), 'utf8')).toMatch(/supervise --role all --user daemon/);
  });

  it('writes units that systemd-analyze verify accepts', async () => {
    // verify resolves units and commands inside --root: give it systemd's own units and the node binary.
    mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
    cpSync('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    const node = /^ExecStart=(\S+)/m.exec(readFileSync(join(root, 'etc/systemd/system/mallee-clc.service'), 'utf8'))![1]!;
    mkdirSync(dirname(join(root, node)), { recursive: true });
    try {
      linkSync(node, join(root, node));
    } catch {
      copyFileSync(node, join(root, node));
    }
    const units = readdirSync(join(root, 'etc/systemd/system'));
    const r = await runTool('systemd-analyze', ['verify', `--root=${root}`, ...units], process.env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // And it does catch a broken one.
    writeFileSync(join(root, 'etc/systemd/system/broken.service'), '[Service]\nExecStart=/opt/mallee/nothing\nRestart=sometimes\n');
    const bad = await runTool('systemd-analyze', ['verify', `--root=${root}`, 'broken.service'], process.env);
    expect(bad.code).not.toBe(0);
    rmSync(join(root, 'etc/systemd/system/broken.service'));
  });

  it('a second run changes nothing, and keeps an edited mallee.conf', async () => {
    const base = await freePortBase();
    const edited = readFileSync(conf, 'utf8')
      .replace(/^CLC_PORT=.*$/m, `CLC_PORT="${base}"`).replace(/^CC_PORT=.*$/m, `CC_PORT="${base + 1}"`).replace(/^NC_PORT=.*$/m, `NC_PORT="${base + 2}"`)
      .replace(/^WALRUS_PORT=.*$/m, `WALRUS_PORT="${base + 3}"`).replace(/^SC_PORT=.*$/m, `SC_PORT="${base + 4}"`)
      .replace(/^HYPERVISOR=.*$/m, 'HYPERVISOR="simulated"').replace(/^POLL_INTERVAL=.*$/m, 'POLL_INTERVAL="1"')
      .replace(/^INSTANCE_PATH=.*$/m, `INSTANCE_PATH="${home}/instances"`).replace(/^LOG_LEVEL=.*$/m, 'LOG_LEVEL="warn"');
    writeFileSync(conf, edited);
    const r = await install('--role', 'all');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^install\.sh: nothing changed/m);
    expect(readFileSync(conf, 'utf8')).toBe(edited);
  });
});

describe('the installed cloud under `mallee supervise`', () => {
  it('starts every daemon (clc and walrus as the unprivileged user), registers, and serves awscli', async () => {
    const out = await mallee('supervise', '--role', 'all', '--conf', conf, '--user', USER, '--detach');
    expect(out).toMatch(new RegExp(`supervisor running \\(pid \\d+\\): ${DAEMONS.join(', ')} up`));
    const uid = Number(execFileSync('id', ['-u', USER]).toString());
    expect(uidOf(pidOf('clc'))).toBe(uid);
    expect(uidOf(pidOf('walrus'))).toBe(uid);
    expect(uidOf(pidOf('cc'))).toBe(0);
    const text = readFileSync(conf, 'utf8');
    const port = (k: string) => new RegExp(`^${k}="(\\d+)"`, 'm').exec(text)![1];
    // Registration as on separate hosts: each printed key installed where its daemon reads it (Walrus's for its user).
    const walrusUrl = `http://127.0.0.1:${port('WALRUS_PORT')}`;
    const lastLine = (s: string) => s.trim().split('\n').pop()!;
    // Walrus and the cc are on this host: --walrus-home/--cc-home install their keys (Walrus's for its user).
    expect(await mallee('register-walrus', walrusUrl, '--walrus-home', home)).toContain(`wrote ${join(home, 'keys/walrus.key')}`);
    expect(statSync(join(home, 'keys/walrus.key')).uid).toBe(uid);
    expect(statSync(join(home, 'keys/walrus.key')).mode & 0o777).toBe(0o600);
    await mallee('register-cluster', 'mallee-1a', `http://127.0.0.1:${port('CC_PORT')}`, '--cc-home', home);
    writeFileSync(join(home, 'keys/node.key'), lastLine(await mallee('register-nodes', '--cluster', 'mallee-1a', '--name', 'node1', `http://127.0.0.1:${port('NC_PORT')}`)) + '\n', { mode: 0o600 });
    if (DAEMONS.includes('sc')) await mallee('register-sc', 'mallee-1a', `http://127.0.0.1:${port('SC_PORT')}`, '--walrus-url', walrusUrl, '--sc-home', home);
    await eventually('every component ENABLED', async () => {
      const s = JSON.parse(await mallee('describe-services', '-o', 'json')) as { state: string }[];
      return s.length === DAEMONS.length && s.every((x) => x.state === 'ENABLED') ? true : undefined;
    }, 60_000);
    await mallee('credentials');
    expect(statSync(join(home, 'keys/cloud-pk.pem')).uid).toBe(uid); // Walrus (as the user) reads it
    const env = parseEucarc(join(home, 'eucarc'));
    const aws = async (...args: string[]) => {
      const r = await runTool('aws', ['--output', 'json', ...args], clientEnv(env));
      if (r.code !== 0) throw new Error(`aws ${args.join(' ')}: ${r.stderr}`);
      return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
    };
    // An image as a user makes one, with the installed command: bundled, uploaded to Walrus, registered.
    const disk = join(root, 'disk.img');
    writeFileSync(disk, randomBytes(64 * 1024));
    const bundled = await runTool(process.execPath, [cli, 'bundle-and-upload', '-i', disk, '-b', 'inst'], { ...clientEnv(env), TMPDIR: root });
    expect(bundled.code, bundled.stderr).toBe(0);
    const image = String((await aws('ec2', 'register-image', '--image-location', 'inst/disk.img.manifest.xml', '--name', 'installed')).ImageId);
    const id = String(((await aws('ec2', 'run-instances', '--image-id', image)).Instances as { InstanceId: string }[])[0]!.InstanceId);
    await eventually(`${id} running`, async () => {
      const r = await aws('ec2', 'describe-instances', '--instance-ids', id);
      return (r.Reservations as { Instances: { State: { Name: string } }[] }[])[0]!.Instances[0]!.State.Name === 'running' ? true : undefined;
    });
    const s3 = (...args: string[]) => runTool('aws', ['--endpoint-url', env.S3_URL!, 's3', ...args], clientEnv(env));
    expect((await s3('mb', 's3://installed')).code).toBe(0);
    const file = join(root, 'hello.txt');
    writeFileSync(file, 'hello from an installed cloud\n');
    expect((await s3('cp', file, 's3://installed/hello.txt')).code).toBe(0);
    expect((await s3('ls', 's3://installed/')).stdout).toMatch(/hello\.txt/);
  });

  it('a daemon killed with SIGKILL is started again by the supervisor, and the cloud is whole again', async () => {
    const before = pidOf('cc');
    process.kill(before, 'SIGKILL');
    const after = await eventually('a new cc', async () => {
      const pid = pidOf('cc');
      return pid !== before && existsSync(`/proc/${pid}`) ? pid : undefined;
    });
    expect(readFileSync(join(home, 'log/supervise.log'), 'utf8')).toMatch(/cc: exited \(SIGKILL\) after [\d.]+ s; restarting in 1 s/);
    await eventually('every component ENABLED again', async () => {
      const s = JSON.parse(await mallee('describe-services', '-o', 'json')) as { type: string; state: string }[];
      return s.length === DAEMONS.length && s.every((x) => x.state === 'ENABLED') ? true : undefined;
    });
    expect(pidOf('cc')).toBe(after);
  });

  it('`mallee down` stops the supervisor and its daemons: nothing of the installed tree keeps running', async () => {
    const out = await mallee('down');
    expect(out).toMatch(/supervisor \(pid \d+\) stopped with its daemons/);
    expect(processesUnder(root)).toEqual([]);
  });
});
