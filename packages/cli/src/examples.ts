// Examples shown at the end of `mallee <command> --help`, kept in one table so every command has
// them without each command's definition growing. Commands that define their own "Example" text keep it.
import type { Command } from 'commander';

const EXAMPLES: Record<string, string[]> = {
  up: [
    'mallee up --detach                                  # all-in-one in /var/lib/mallee (real guests if libvirtd runs)',
    'mallee up --home /tmp/cloud --hypervisor simulated --port-base 18773 --detach',
    'source /var/lib/mallee/eucarc && aws ec2 describe-availability-zones',
  ],
  down: ['mallee down --home /tmp/cloud'],
  status: ['mallee status', 'mallee status --output json | jq -r \'.[] | select(.state != "ENABLED") | .name\''],
  'describe-services': ['mallee describe-services --output table'],
  credentials: ['mallee credentials --account alice --out ./alice-creds && source ./alice-creds/eucarc'],
  'account create': ['mallee account create alice', 'mallee account create alice --output json | jq -r .secretAccessKey'],
  'account list': ['mallee account list --output json'],
  'user key create': ['mallee user key create --account alice'],
  'register-cluster': [
    'mallee register-cluster mallee-1a http://10.0.0.1:8774 --cc-home /var/lib/mallee   # the cc on this host: its keys/cloud.key is written',
    'mallee register-cluster zone-b http://10.0.0.2:8774   # then install the printed key as <cc home>/keys/cloud.key on that host',
  ],
  'register-nodes': [
    'mallee register-nodes --cluster mallee-1a http://node1:8775 http://node2:8775',
    "mallee register-nodes --cluster mallee-1a http://node1:8775 | tail -1 | ssh root@node1 'install -m 600 /dev/stdin /var/lib/mallee/keys/node.key'",
  ],
  'register-walrus': ['mallee register-walrus http://10.0.0.1:8776 --walrus-home /var/lib/mallee   # Walrus on this host'],
  'register-sc': ['mallee register-sc mallee-1a http://10.0.0.1:8777 --sc-home /var/lib/mallee'],
  'list-clusters': ['mallee list-clusters', "mallee list-clusters --output json | jq -r '.[] | select(.state != \"ENABLED\") | .name'"],
  'list-nodes': ['mallee list-nodes --cluster mallee-1a'],
  'deregister-cluster': ['mallee deregister-cluster zone-b'],
  'deregister-nodes': ['mallee deregister-nodes --cluster mallee-1a node2'],
  'list-walrus': ['mallee list-walrus'],
  'list-sc': ['mallee list-sc --output json'],
  'deregister-walrus': ['mallee deregister-walrus && mallee register-walrus http://10.0.0.1:8776   # install the printed key as Walrus\'s keys/walrus.key'],
  'deregister-sc': ['mallee deregister-sc mallee-1a'],
  'migrate-instance': ['mallee migrate-instance i-0123abcd --dest node2', 'mallee migrate-instance i-0123abcd   # to the node with the most free memory'],
  'evacuate-node': ['mallee evacuate-node node1   # before maintenance: every running instance moves, one at a time'],
  backup: ['mallee backup --out /srv/backups/mallee-$(date +%F)', 'mallee backup --objects --out /srv/backups/full   # with the Walrus objects'],
  restore: ['mallee down --home /var/lib/mallee && mallee restore /srv/backups/mallee-2024-05-01 --home /var/lib/mallee --force && mallee up'],
};

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Adds the table's examples to every command (and subcommand) of program that has some. */
export function addExamples(program: Command): void {
  const visit = (cmd: Command) => {
    const lines = EXAMPLES[fullName(cmd)];
    if (lines) cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`);
    cmd.commands.forEach(visit);
  };
  program.commands.forEach(visit);
}
