// Running the host's networking tools (ip, bridge, iptables-restore, ebtables, dnsmasq). Everything
// that changes the host goes through a CommandRunner, so tests can check the exact commands (the
// 802.1Q path cannot run on a kernel without 8021q) and the daemons log what they did.
import { execFile } from 'node:child_process';

export type CommandRunner = (argv: readonly string[], opts?: { input?: string }) => Promise<string>;

export class CommandError extends Error {
  constructor(public readonly argv: readonly string[], public readonly stderr: string, public readonly exitCode: number | string | undefined) {
    super(`${argv.join(' ')} failed (${exitCode ?? 'no exit code'}): ${stderr.trim() || '(no output)'}`);
    this.name = 'CommandError';
  }
}

/** Runs the command (no shell) and resolves with its stdout; rejects with a CommandError carrying stderr. */
export const execRunner: CommandRunner = (argv, opts = {}) =>
  new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new CommandError(argv, String(stderr || err.message), (err as NodeJS.ErrnoException).code));
      else resolve(String(stdout));
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
