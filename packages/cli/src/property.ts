// `mallee property [NAME[=VALUE]]`: list, show, set and reset cloud properties (euca-describe-properties
// and euca-modify-property in one), over the clc's DescribeProperties and ModifyPropertyValue.
import type { Command, Option } from 'commander';
import { admin, properties as ops } from '@mallee/wire';
import { adminLink, CliError } from './admin.js';
import type { Home } from './home.js';
import type { OutputFormat } from './output.js';

export interface CommandKit {
  homeOption(): Option;
  outputOption(): Option;
  homeOf(opts: { home: string }): Home;
  print(rows: Record<string, unknown>[], columns: string[], format: OutputFormat): void;
  say(line: string): void;
}

export function propertyCommand(program: Command, kit: CommandKit): void {
  program
    .command('property [assignment]')
    .description('cloud properties: list (all, or those starting with NAME), show NAME, set NAME=VALUE, or --reset NAME to its default')
    .option('--reset', 'return NAME to its default')
    .addOption(kit.homeOption())
    .addOption(kit.outputOption())
    .addHelpText('after', [
      '',
      'Examples:',
      '  mallee property                                   # every property, its value, default and where the value comes from',
      '  mallee property walrus                            # those starting with "walrus"',
      '  mallee property cloud.vmstate.terminated_time=5   # keep terminated instances visible for 5 minutes',
      '  mallee property mallee-1a.storage.maxvolumesizeingb=100   # a per-zone property, for one zone',
      '  mallee property --reset cloud.vmstate.terminated_time',
    ].join('\n'))
    .action(async (assignment: string | undefined, opts: { home: string; output: OutputFormat; reset?: boolean }) => {
      const link = adminLink(kit.homeOf(opts));
      const eq = assignment?.indexOf('=') ?? -1;
      if (opts.reset || eq > 0) {
        if (!assignment) throw new CliError('--reset needs a property NAME', 2);
        if (opts.reset && eq > 0) throw new CliError('give NAME=VALUE or --reset NAME, not both', 2);
        const name = eq > 0 ? assignment.slice(0, eq) : assignment;
        const res = await link.call(admin.ModifyPropertyValue, opts.reset ? { name, reset: true } : { name, value: assignment.slice(eq + 1) });
        if (opts.output === 'json') kit.say(JSON.stringify(res, null, 2));
        else kit.say(`PROPERTY\t${res.name}\t${res.value}\twas ${res.oldValue}${opts.reset ? ` (reset to its ${res.source === 'mallee.conf' ? 'mallee.conf setting' : 'default'})` : ''}`);
        return;
      }
      const all = (await link.call(ops.DescribeProperties, assignment ? { prefix: assignment } : {})).properties;
      const exact = all.filter((p) => p.name === assignment);
      const rows = (exact.length ? exact : all).map((p) => ({ ...p, default: p.defaultValue }));
      if (assignment && !rows.length) throw new CliError(`no property named or starting with ${assignment}: \`mallee property\` lists them all`);
      if (opts.output === 'json') return kit.say(JSON.stringify(exact.length ? exact : all, null, 2));
      if (exact.length === 1) {
        const p = rows[0]!;
        const type = p.choices ? `enum (${p.choices.join(', ')})` : p.type;
        kit.print([{ ...p, type }], ['name', 'value', 'type', 'default', 'source', 'description'], 'table');
        return;
      }
      kit.print(rows, ['name', 'value', 'default', 'source', 'description'], 'table');
    });
}
