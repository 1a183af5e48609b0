#!/usr/bin/env node
// `mallee`: bring up and administer a Mallee cloud (all-in-one launcher, registration, accounts, credentials).
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { admin } from '@mallee/wire';
import { adminLink, CliError } from './admin.js';
import { configOf, down, up, writeAccountCredentials, writeBlockStorage, type Hypervisor } from './cloud.js';
import { serviceState } from './daemons.js';
import { ADMIN_ACCOUNT, defaultHome, homeAt, SERVICES } from './home.js';
import { parseOutput, renderRows, type OutputFormat } from './output.js';
import { propertyCommand } from './property.js';
import { registrationCommands } from './registration.js';
import { backupCommands } from './backup.js';
import { adoptHomeFiles } from './ownership.js';
import { superviseCommand } from './supervise.js';
import { addExamples } from './examples.js';
import { installTestImage, testImageIdsFile, type TestImage } from './test-image.js';
import { addImageCommands } from './image-commands.js';
import { componentHome, installKey } from './install-key.js';

// `mallee up | head` closes our stdout early: the work goes on, only the talking stops.
let stdoutClosed = false;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  stdoutClosed = true;
});
const say = (line: string) => {
  if (!stdoutClosed) console.log(line);
};
const homeOption = () => new Option('--home <dir>', 'Mallee home directory (env MALLEE_HOME)').default(defaultHome(), '/var/lib/mallee or $MALLEE_HOME');
const outputOption = () => new Option('-o, --output <format>', 'json or table').default('table').argParser(parseOutput);
const homeOf = (opts: { home: string }) => homeAt(resolve(opts.home));
const print = (rows: Record<string, unknown>[], columns: string[], format: OutputFormat) => say(renderRows(rows, columns, format));

const program = new Command('mallee').description('Mallee: an AWS-compatible private cloud (Eucalyptus 2.x architecture)').showHelpAfterError();

program
  .command('up')
  .description('start an all-in-one cloud (clc, cc, nc) in --home, register it and write <home>/eucarc')
  .addOption(homeOption())
  .addOption(new Option('--hypervisor <kind>', 'simulated or libvirt (default: libvirt when it can run here)').choices(['simulated', 'libvirt']))
  .option('--detach', 'return once the cloud is up, leaving the daemons running')
  .option('--port-base <n>', 'clc on N, cc N+1, nc N+2, walrus N+3, sc N+4', (v) => Number(v))
  .option('--poll-interval <seconds>', 'controller poll interval written to a new mallee.conf', (v) => Number(v))
  .option('--no-test-image', 'with real guests, do not build and register the test image set')
  .action(async (opts: { home: string; hypervisor?: Hypervisor; detach?: boolean; portBase?: number; pollInterval?: number; testImage: boolean }) => {
    const home = homeOf(opts);
    const res = await up(home, { hypervisor: opts.hypervisor, portBase: opts.portBase, pollInterval: opts.pollInterval, say });
    let image: TestImage | undefined;
    if (opts.testImage && res.config.HYPERVISOR !== 'simulated') {
      try {
        image = await installTestImage(home, res.config, say);
      } catch (err) {
        say(`warning: no test image registered (${(err as Error).message}); retry with \`mallee test-image --home ${home.dir}\``);
      }
    }
    say('');
    say(`Mallee is up in ${home.dir} (region ${res.config.REGION}, zone ${res.config.ZONE}).`);
    say(`  web console: ${res.urls.clc.replace(/\/$/, '')}/console/  (sign in with the access keys in ${res.credentials.eucarc})`);
    say(`  source ${res.credentials.eucarc}`);
    say('  aws ec2 describe-availability-zones');
    if (image) {
      say(`  aws ec2 run-instances --image-id ${image.emi} --instance-type t1.micro    # the test image (kernel ${image.eki}, ramdisk ${image.eri})`);
      say('  aws ec2 get-console-output --instance-id i-…    # shows "mallee: boot done i-…" once it has booted');
    }
    say('  ../shared/tools/euca euca-describe-instances     # or any euca2ools 3.4; config: ' + res.credentials.eucaIni);
    if (res.urls.walrus) {
      say('Your own image (a raw disk, or a kernel + ramdisk + root set), bundled and uploaded into Walrus:');
      say('  mallee bundle-and-upload -i disk.img -b my-images --register my-image    # or: mallee bundle-image, then mallee upload-bundle');
      say('  euca-bundle-image -i disk.img -r x86_64 -d bundle && euca-upload-bundle -b my-images -m bundle/disk.img.manifest.xml && euca-register -n my-image my-images/disk.img.manifest.xml');
    }
    say(`  AWS_CONFIG_FILE=${res.credentials.awsConfig} AWS_SHARED_CREDENTIALS_FILE=${res.credentials.awsCredentials} aws ec2 describe-instances`);
    if (opts.detach) {
      say(`Stop it with: mallee down --home ${home.dir}`);
      return;
    }
    say('Running in the foreground: Ctrl-C stops the cloud (use --detach to leave it running).');
    await new Promise<void>((done) => {
      // Signal listeners alone do not keep node running; this timer does, until we stop.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const stop = () => {
        clearInterval(keepAlive);
        say('\nstopping…');
        down(home, say).then(done, (err: unknown) => {
          console.error(err);
          done();
        });
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  });

program
  .command('down')
  .description('stop the daemons of --home')
  .addOption(homeOption())
  .action(async (opts: { home: string }) => down(homeOf(opts), say));

program
  .command('test-image')
  .description('build a test image set from Debian packages and register it as public EKI/ERI/EMI: the busybox set (boots in seconds), or with --debian a real Debian 12 guest (cloud-init, qemu-guest-agent, sshd)')
  .addOption(homeOption())
  .option('--debian', 'the Debian 12 guest (debootstrap; built once per host into /var/cache/mallee/test-images, or $MALLEE_IMAGE_CACHE)')
  .addHelpText('after', '\nExamples:\n  mallee test-image --home /var/lib/mallee && aws ec2 run-instances --image-id "$(jq -r .emi /var/lib/mallee/test-image.json)"\n  mallee test-image --debian --home /var/lib/mallee && aws ec2 run-instances --instance-type m1.small --key-name mykey --image-id "$(jq -r .emi /var/lib/mallee/test-image-debian.json)"')
  .action(async (opts: { home: string; debian?: boolean }) => {
    const home = homeOf(opts);
    const which = opts.debian ? 'debian' : 'busybox';
    const image = await installTestImage(home, configOf(home), say, which);
    say(`${which === 'debian' ? 'Debian 12 test guest' : 'test image'}: ${image.emi} (kernel ${image.eki}, ramdisk ${image.eri}); ids also in ${home.dir}/${testImageIdsFile(which)}`);
  });

program
  .command('status')
  .description("every component's health (DescribeServices) and this home's processes")
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (opts: { home: string; output: OutputFormat }) => {
    const home = homeOf(opts);
    const local = SERVICES.map((svc) => serviceState(home, svc)).filter((s) => (s.svc !== 'walrus' && s.svc !== 'sc') || s.running || s.pid);
    const clc = local.find((s) => s.svc === 'clc')!;
    if (!clc.running) {
      print(local.map((s) => ({ type: s.svc, pid: s.pid, url: s.url, state: s.running ? 'RUNNING' : 'STOPPED' })), ['type', 'pid', 'url', 'state'], opts.output);
      throw new CliError(`the clc is not running in ${home.dir}: start it with \`mallee up --home ${home.dir}\``);
    }
    const { services } = await adminLink(home).call(admin.DescribeServices, {});
    const rows = services.map((s) => ({ ...s, pid: local.find((l) => l.svc === s.type && l.url === s.url)?.pid }));
    print(rows, ['type', 'name', 'partition', 'state', 'url', 'pid', 'lastContact', 'detail'], opts.output);
    const bad = services.filter((s) => s.state !== 'ENABLED');
    if (bad.length) process.exitCode = 3;
  });

program
  .command('describe-services')
  .description('DescribeServices: every registered component and its state')
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (opts: { home: string; output: OutputFormat }) => {
    const { services } = await adminLink(homeOf(opts)).call(admin.DescribeServices, {});
    print(services, ['type', 'name', 'partition', 'state', 'url', 'lastContact', 'detail'], opts.output);
  });

program
  .command('credentials')
  .description('write eucarc, euca2ools.ini, aws-config and aws-credentials for an account')
  .addOption(homeOption())
  .option('--account <name>', 'account name', ADMIN_ACCOUNT)
  .option('--out <dir>', 'directory to write into (default: the home for the admin account, else ./<account>-creds)')
  .action(async (opts: { home: string; account: string; out?: string }) => {
    const home = homeOf(opts);
    const out = resolve(opts.out ?? (opts.account === ADMIN_ACCOUNT ? home.dir : `${opts.account}-creds`));
    const written = await writeAccountCredentials(home, adminLink(home), configOf(home), opts.account, out);
    for (const f of Object.values(written)) say(`wrote ${f}`);
    say(`use with: source ${written.eucarc}`);
  });

const account = program.command('account').description('accounts (each isolated from the others)');
account
  .command('create <name>')
  .description('create an account with an admin user and an access key')
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (name: string, opts: { home: string; output: OutputFormat }) => {
    const creds = await adminLink(homeOf(opts)).call(admin.CreateAccount, { name });
    print([creds], ['accountName', 'accountId', 'userName', 'accessKeyId', 'secretAccessKey'], opts.output);
    if (opts.output === 'table') say(`\nwrite its credentials with: mallee credentials --home ${homeOf(opts).dir} --account ${name} --out ${name}-creds`);
  });
account
  .command('list')
  .description('list accounts')
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (opts: { home: string; output: OutputFormat }) => {
    const { accounts } = await adminLink(homeOf(opts)).call(admin.DescribeAccounts, {});
    print(accounts, ['accountName', 'accountId'], opts.output);
  });

program
  .command('user')
  .description("users of an account (the account's admin user)")
  .command('key')
  .description('access keys')
  .command('create')
  .description("create a new access key for the account's admin user")
  .requiredOption('--account <name>', 'account name')
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (opts: { home: string; account: string; output: OutputFormat }) => {
    const creds = await adminLink(homeOf(opts)).call(admin.CreateAccessKey, { accountName: opts.account });
    print([creds], ['accountName', 'userName', 'accessKeyId', 'secretAccessKey'], opts.output);
  });

program
  .command('register-cluster <name> <url>')
  .description("register a cluster controller; installs (--cc-home) or prints the key that is the cc's keys/cloud.key")
  .option('--cc-home <dir>', "the cc's home on this host (or mounted here): the key is written as its keys/cloud.key")
  .addOption(homeOption())
  .action(async (name: string, url: string, opts: { home: string; ccHome?: string }) => {
    const { key } = await adminLink(homeOf(opts)).call(admin.RegisterCluster, { name, url });
    say(`registered cluster ${name} at ${url}.`);
    if (opts.ccHome) {
      const cc = componentHome(opts.ccHome);
      installKey(cc, cc.cloudKey, key);
      say(`wrote ${cc.cloudKey}`);
      return;
    }
    say(`Install this key as <cc home>/keys/cloud.key (mode 0600) on the cc host:`);
    say(key);
  });

program
  .command('register-nodes <urls...>')
  .description("register node controllers with a cluster; installs (--nc-home) or prints each key that is the nc's keys/node.key")
  .requiredOption('--cluster <name>', 'cluster (zone) name')
  .option('--name <node>', 'node name (one URL only; default: its host, plus -PORT unless the port is 8775)')
  .option('--nc-home <dir>', "the nc's home on this host (or mounted here; one URL only): the key is written as its keys/node.key")
  .addOption(homeOption())
  .action(async (urls: string[], opts: { home: string; cluster: string; name?: string; ncHome?: string }) => {
    if (opts.name && urls.length > 1) throw new CliError('--name names one node: register the others separately');
    if (opts.ncHome && urls.length > 1) throw new CliError('--nc-home is the home of one node: register the others separately');
    const link = adminLink(homeOf(opts));
    for (const url of urls) {
      const u = new URL(url);
      const node = opts.name ?? `${u.hostname}${u.port && u.port !== '8775' ? `-${u.port}` : ''}`.replace(/[^a-zA-Z0-9-]+/g, '-');
      const { key } = await link.call(admin.RegisterNodeAdmin, { cluster: opts.cluster, node, url });
      if (opts.ncHome) {
        const nc = componentHome(opts.ncHome);
        installKey(nc, nc.nodeKey, key);
        say(`registered node ${node} at ${url} in cluster ${opts.cluster}; wrote ${nc.nodeKey}`);
        continue;
      }
      say(`registered node ${node} at ${url} in cluster ${opts.cluster}. Install this key as <nc home>/keys/node.key (mode 0600) on that host:`);
      say(key);
    }
  });

program
  .command('register-sc <zone> <url>')
  .description("register the storage controller of a zone; writes (or prints) its keys/sc.key and keys/blockstorage.json")
  .option('--walrus-url <url>', "Walrus's S3 URL the sc uploads snapshots to (default: this home's running walrus)")
  .option('--sc-home <dir>', 'the sc\'s home on this host, to install its keys in (default: print them)')
  .addOption(homeOption())
  .action(async (zone: string, url: string, opts: { home: string; walrusUrl?: string; scHome?: string }) => {
    const home = homeOf(opts);
    const walrusUrl = opts.walrusUrl ?? serviceState(home, 'walrus').url;
    if (!walrusUrl) throw new CliError(`no walrus is running in ${home.dir}: pass --walrus-url with Walrus's S3 URL`);
    const res = await adminLink(home).call(admin.RegisterStorageController, { zone, url, walrusUrl });
    say(`registered the storage controller of ${zone} at ${url} (snapshots into ${walrusUrl}, bucket ${res.storage.bucket}).`);
    if (opts.scHome) {
      const scHome = componentHome(opts.scHome);
      writeBlockStorage(scHome, res.key, res.storage);
      adoptHomeFiles(scHome);
      say(`wrote ${scHome.scKey} and ${scHome.blockStorage}`);
    } else {
      say('Install this key as <sc home>/keys/sc.key (mode 0600) on the sc host:');
      say(res.key);
      say('and this as <sc home>/keys/blockstorage.json (mode 0600):');
      say(JSON.stringify(res.storage));
    }
  });

program
  .command('describe-volumes')
  .description("every account's EBS volumes and the storage controllers (--verbose: what each SC reports, exports)")
  .option('--verbose', "also ask each storage controller about its volumes")
  .addOption(homeOption())
  .addOption(outputOption())
  .action(async (opts: { home: string; verbose?: boolean; output: OutputFormat }) => {
    const res = await adminLink(homeOf(opts)).call(admin.DescribeVolumesAdmin, { verbose: opts.verbose ?? false });
    const cols = ['volumeId', 'accountName', 'zone', 'sizeGiB', 'status', 'snapshotId', 'instanceId', 'device', 'attachmentStatus'];
    if (opts.output === 'json') {
      say(JSON.stringify(res, null, 2));
      return;
    }
    print(res.volumes, opts.verbose ? [...cols, 'scStatus', 'exportedTo', 'detail'] : cols, opts.output);
    if (opts.verbose) {
      say('');
      print(res.controllers, ['zone', 'state', 'url', 'totalGiB', 'maxTotalGiB', 'maxVolumeGiB', 'detail'], opts.output);
    }
  });

// Live migration (issue 7): one instance, or every running instance of a node (evacuate), to another node of its cluster.
const migrationTimeoutMs = 1_500_000;
async function migrate(opts: { home: string; output: OutputFormat }, req: { instanceId?: string; sourceNode?: string; dest?: string }): Promise<void> {
  const { migrations } = await adminLink(homeOf(opts), migrationTimeoutMs).call(admin.MigrateInstances, req);
  if (opts.output === 'json') say(JSON.stringify(migrations, null, 2));
  else print(migrations.map((m) => ({ ...m, volumes: m.volumes.join(' '), seconds: m.ms === undefined ? '' : (m.ms / 1000).toFixed(1) })), ['instanceId', 'source', 'dest', 'seconds', 'volumes', 'error'], opts.output);
  const failed = migrations.filter((m) => m.error);
  if (failed.length) throw new CliError(`${failed.length} of ${migrations.length} instances were not migrated: ${failed.map((m) => `${m.instanceId}: ${m.error}`).join('; ')}`);
}

program
  .command('migrate-instance')
  .description('live-migrate a running instance to another node of its cluster (its addresses and volumes follow)')
  .argument('[instance-id]', 'the instance (or --source NODE for all of a node\'s)')
  .option('--dest <node>', 'destination node (default: the ENABLED node with the most free memory that fits it)')
  .option('--source <node>', 'instead of one instance: every running instance of this node (as evacuate-node)')
  .addOption(homeOption())
  .addOption(outputOption())
  .action((instanceId: string | undefined, opts: { home: string; output: OutputFormat; dest?: string; source?: string }) =>
    migrate(opts, { ...(instanceId ? { instanceId } : {}), ...(opts.source ? { sourceNode: opts.source } : {}), ...(opts.dest ? { dest: opts.dest } : {}) }));

program
  .command('evacuate-node')
  .description('live-migrate every running instance of a node to the other nodes of its cluster, one at a time')
  .argument('<node>', 'the node name, as `mallee list-nodes` shows it')
  .option('--dest <node>', 'put them all on this node (default: each where it fits best)')
  .addOption(homeOption())
  .addOption(outputOption())
  .action((node: string, opts: { home: string; output: OutputFormat; dest?: string }) => migrate(opts, { sourceNode: node, ...(opts.dest ? { dest: opts.dest } : {}) }));

const kit = { homeOption, outputOption, homeOf, print, say };
propertyCommand(program, kit);
registrationCommands(program, kit);
backupCommands(program, kit);
addImageCommands(program, say, homeOption, homeOf);
superviseCommand(program, kit);
// On an installed host the home belongs to the clc's user: what root wrote there is handed to it.
program.hook('postAction', (_program, action) => {
  const opts = action.opts() as { home?: string };
  if (opts.home) adoptHomeFiles(homeAt(resolve(opts.home)), { all: action.name() === 'restore' });
});
addExamples(program);

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CliError) {
    console.error(`mallee: ${err.message}`);
    process.exit(err.exitCode);
  }
  console.error(`mallee: ${(err as Error).message}`);
  process.exit(1);
}
