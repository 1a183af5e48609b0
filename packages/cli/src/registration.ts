// euca_conf's listing and deregistration: `mallee list-clusters`, `list-nodes`, `list-walrus`, `list-sc`,
// `deregister-cluster`, `deregister-nodes`, `deregister-walrus`, `deregister-sc` (the register-* commands
// are beside the areas they belong to), over the clc's admin wire ops.
import type { Command } from 'commander';
import { admin } from '@mallee/wire';
import { adminLink, CliError } from './admin.js';
import type { OutputFormat } from './output.js';
import type { CommandKit } from './property.js';

export function registrationCommands(program: Command, kit: CommandKit): void {
  program
    .command('list-clusters')
    .description('registered cluster controllers (availability zones), their state and last contact')
    .addOption(kit.homeOption())
    .addOption(kit.outputOption())
    .action(async (opts: { home: string; output: OutputFormat }) => {
      const { services } = await adminLink(kit.homeOf(opts)).call(admin.DescribeServices, {});
      const rows = services.filter((s) => s.type === 'cc');
      kit.print(rows, ['name', 'url', 'state', 'lastContact', 'detail'], opts.output);
    });

  program
    .command('list-nodes')
    .description("registered node controllers (of every cluster, or --cluster's), as their cc sees them")
    .option('--cluster <name>', 'only this cluster')
    .addOption(kit.homeOption())
    .addOption(kit.outputOption())
    .action(async (opts: { home: string; output: OutputFormat; cluster?: string }) => {
      const { services } = await adminLink(kit.homeOf(opts)).call(admin.DescribeServices, {});
      if (opts.cluster && !services.some((s) => s.type === 'cc' && s.name === opts.cluster)) throw new CliError(`no cluster named ${opts.cluster}: \`mallee list-clusters\` lists them`);
      const rows = services.filter((s) => s.type === 'nc' && (!opts.cluster || s.partition === opts.cluster)).map((s) => ({ ...s, cluster: s.partition }));
      kit.print(rows, ['name', 'cluster', 'url', 'state', 'lastContact', 'detail'], opts.output);
    });

  program
    .command('deregister-cluster <name>')
    .description("deregister a cluster controller: the clc stops polling it and its key stops working; its instances' records stay")
    .addOption(kit.homeOption())
    .action(async (name: string, opts: { home: string }) => {
      await adminLink(kit.homeOf(opts)).call(admin.DeregisterCluster, { name });
      kit.say(`deregistered cluster ${name}. Its instances keep their last known state until terminated; remove keys/cloud.key on the cc host.`);
    });

  program
    .command('deregister-nodes <nodes...>')
    .description('deregister node controllers from a cluster: the cc stops polling them and their keys stop working')
    .requiredOption('--cluster <name>', 'cluster (zone) name')
    .addOption(kit.homeOption())
    .action(async (nodes: string[], opts: { home: string; cluster: string }) => {
      const link = adminLink(kit.homeOf(opts));
      for (const node of nodes) {
        await link.call(admin.DeregisterNodeAdmin, { cluster: opts.cluster, node });
        kit.say(`deregistered node ${node} from cluster ${opts.cluster}`);
      }
    });

  for (const [type, what] of [['walrus', 'the registered Walrus'], ['sc', 'registered storage controllers (one per zone)']] as const) {
    program
      .command(`list-${type}`)
      .description(`${what}, its state and last contact`)
      .addOption(kit.homeOption())
      .addOption(kit.outputOption())
      .action(async (opts: { home: string; output: OutputFormat }) => {
        const { services } = await adminLink(kit.homeOf(opts)).call(admin.DescribeServices, {});
        kit.print(services.filter((s) => s.type === type), ['name', 'partition', 'url', 'state', 'lastContact', 'detail'], opts.output);
      });
  }

  program
    .command('deregister-walrus')
    .description("deregister the cloud's Walrus: the clc forgets it and its key (S3 requests fail until it is registered again)")
    .addOption(kit.homeOption())
    .action(async (opts: { home: string }) => {
      await adminLink(kit.homeOf(opts)).call(admin.DeregisterWalrus, { name: 'walrus' });
      kit.say('deregistered walrus. Register one again with `mallee register-walrus URL` (it prints a new key).');
    });

  program
    .command('deregister-sc <zone>')
    .description("deregister a zone's storage controller: the clc stops using it and its key stops working; the volumes' records stay")
    .addOption(kit.homeOption())
    .action(async (zone: string, opts: { home: string }) => {
      await adminLink(kit.homeOf(opts)).call(admin.DeregisterStorageController, { zone });
      kit.say(`deregistered the storage controller of zone ${zone}`);
    });
}
