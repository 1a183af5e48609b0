// tgtd through tgtadm: the iSCSI targets of this host. tgtd is shared by everything on the host (other
// SCs, other tests), so callers only ever touch targets and accounts under their own name prefix.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TgtTarget {
  tid: number;
  iqn: string;
  /** LUN number → backing store path (LUN 0, the controller, is left out). */
  luns: Map<number, string>;
  accounts: string[];
  acls: string[];
  /** Initiators logged in now. */
  sessions: number;
}

export class TgtError extends Error {
  constructor(message: string, readonly exitCode?: number) {
    super(message);
    this.name = 'TgtError';
  }
}

async function tgtadmOn(controlPort: number, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('tgtadm', [...(controlPort ? ['-C', String(controlPort)] : []), '--lld', 'iscsi', ...args], { timeout: 30_000 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; code?: number | string };
    if (e.code === 'ENOENT') throw new TgtError('tgtadm is not installed: install the Debian package tgt and start tgtd (deploy/lib.sh ensure_tgt)');
    const msg = (e.stderr ?? '').trim() || e.message;
    if (/can't send the request|connect/i.test(msg)) throw new TgtError(`tgtd is not running (${msg}): start it with \`tgtd\``, typeof e.code === 'number' ? e.code : undefined);
    throw new TgtError(`tgtadm ${args.join(' ')}: ${msg}`, typeof e.code === 'number' ? e.code : undefined);
  }
}

/** Parses `tgtadm --mode target --op show`. */
export function parseTargets(text: string): TgtTarget[] {
  const out: TgtTarget[] = [];
  let cur: TgtTarget | undefined;
  let section = '';
  let lun: number | undefined;
  for (const raw of text.split('\n')) {
    const m = /^Target (\d+): (\S+)/.exec(raw);
    if (m) {
      cur = { tid: Number(m[1]), iqn: m[2]!, luns: new Map(), accounts: [], acls: [], sessions: 0 };
      out.push(cur);
      section = '';
      continue;
    }
    if (!cur) continue;
    const line = raw.trim();
    if (/^[A-Z_][A-Za-z_ ]* information:$/.test(line)) {
      section = line;
      continue;
    }
    if (section.startsWith('I_T nexus') && /^I_T nexus: \d+/.test(line)) cur.sessions++;
    if (section.startsWith('LUN')) {
      const l = /^LUN: (\d+)/.exec(line);
      if (l) lun = Number(l[1]);
      const p = /^Backing store path: (.+)$/.exec(line);
      if (p && lun !== undefined && lun > 0) cur.luns.set(lun, p[1]!);
    }
    if (section.startsWith('Account') && line) cur.accounts.push(line);
    if (section.startsWith('ACL') && line) cur.acls.push(line);
  }
  return out;
}

/** The tgtd on this management port (SC_TGT_CONTROL_PORT; 0 is the host's default tgtd). */
export function tgtOn(controlPort: number) {
  const tgtadm = (...args: string[]) => tgtadmOn(controlPort, ...args);
  return {
    async targets(): Promise<TgtTarget[]> {
      return parseTargets(await tgtadm('--mode', 'target', '--op', 'show'));
    },

    async accounts(): Promise<string[]> {
      const text = await tgtadm('--mode', 'account', '--op', 'show');
      return text.split('\n').slice(1).map((l) => l.trim()).filter(Boolean);
    },

    async createTarget(tid: number, iqn: string): Promise<void> {
      await tgtadm('--mode', 'target', '--op', 'new', '--tid', String(tid), '--targetname', iqn);
    },

    async addLun(tid: number, lun: number, path: string): Promise<void> {
      await tgtadm('--mode', 'logicalunit', '--op', 'new', '--tid', String(tid), '--lun', String(lun), '--backing-store', path);
    },

    async createAccount(user: string, password: string): Promise<void> {
      await tgtadm('--mode', 'account', '--op', 'new', '--user', user, '--password', password);
    },

    async bindAccount(tid: number, user: string): Promise<void> {
      await tgtadm('--mode', 'account', '--op', 'bind', '--tid', String(tid), '--user', user);
    },

    async bindInitiator(tid: number, address: string): Promise<void> {
      await tgtadm('--mode', 'target', '--op', 'bind', '--tid', String(tid), '--initiator-address', address);
    },

    /** Deletes the target even with initiators logged in (their sessions end). */
    async deleteTarget(tid: number): Promise<void> {
      await tgtadm('--mode', 'target', '--op', 'delete', '--force', '--tid', String(tid));
    },

    async deleteAccount(user: string): Promise<void> {
      await tgtadm('--mode', 'account', '--op', 'delete', '--user', user);
    },
  };
}

export const tgt = tgtOn(0);

export type Tgt = typeof tgt;
