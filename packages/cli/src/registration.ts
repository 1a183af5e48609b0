// euca_conf's listing and deregistration: `mallee list-clusters`, `list-nodes`, `deregister-cluster`,
// `deregister-nodes` (the register-* commands are in main.ts), over the clc's admin wire ops.
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
}
