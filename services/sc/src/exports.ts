// iSCSI exports: one tgtd target + LUN per (volume, initiator), with its own CHAP account and an ACL
// for the initiator's address. The database row is written before tgtd is touched, and restart
// reconciles tgtd with the rows: a target of ours without a row is deleted, a row without a target
// gets it (again), and a half-made one (an SC killed between making the target and adding its LUN,
// account or ACL) is made again whole — by the restart, or by the next ExportVolume of it. IQNs and account names carry this SC's prefix; nothing else in tgtd is ours.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import { WireError } from '@mallee/wire';
import type { Tgt, TgtTarget } from './tgt.js';

export const IQN_BASE = 'iqn.2010-05.org.mallee';

interface ExportRow { volume_id: string; initiator: string; iqn: string; chap_user: string; chap_secret: string; tid: number | null }

export interface ExportTarget { iqn: string; lun: number; chapUser: string; chapSecret: string }

/** A tiny mutex: tgtd's tids are allocated by the caller, so target creation is serialised. */
class Lock {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export class Exports {
  private readonly lock = new Lock();

  constructor(private readonly o: { db: Db; tgt: Tgt; prefix: string; log: Logger; pathOf: (volumeId: string) => string }) {}

  /** Our IQN prefix: everything in tgtd that starts with it belongs to this SC. */
  get iqnPrefix(): string {
    return `${IQN_BASE}:${this.o.prefix}.`;
  }

  private rows(volumeId?: string): ExportRow[] {
    return (volumeId
      ? this.o.db.prepare('SELECT * FROM exports WHERE volume_id = ?').all(volumeId)
      : this.o.db.prepare('SELECT * FROM exports').all()) as ExportRow[];
  }

  initiatorsOf(volumeId: string): string[] {
    return this.rows(volumeId).map((r) => r.initiator);
  }

  count(): number {
    return this.o.db.prepare('SELECT COUNT(*) FROM exports').pluck().get() as number;
  }

  async export(volumeId: string, initiator: string): Promise<ExportTarget> {
    return this.lock.run(async () => {
      let row = this.o.db.prepare('SELECT * FROM exports WHERE volume_id = ? AND initiator = ?').get(volumeId, initiator) as ExportRow | undefined;
      if (!row) {
        const tag = initiator.toLowerCase().replace(/[^a-z0-9]+/g, '-');
        const iqn = `${this.iqnPrefix}${volumeId}.${tag}`;
        row = { volume_id: volumeId, initiator, iqn, chap_user: `${this.o.prefix}.${volumeId}.${tag}`, chap_secret: randomBytes(12).toString('hex'), tid: null };
        this.o.db.prepare('INSERT INTO exports (volume_id, initiator, iqn, chap_user, chap_secret, tid, created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)')
          .run(row.volume_id, row.initiator, row.iqn, row.chap_user, row.chap_secret, new Date().toISOString());
      }
      const targets = await this.o.tgt.targets();
      const found = targets.find((t) => t.iqn === row.iqn);
      if (!found || !this.complete(found, row)) await this.remake(row, found, targets);
      return { iqn: row.iqn, lun: 1, chapUser: row.chap_user, chapSecret: row.chap_secret };
    });
  }

  /**
   * Whether tgtd's target is the whole export: the volume as LUN 1, the CHAP account bound, the initiator's
   * ACL. An SC killed while it set one up (between making the target and adding the LUN, say) leaves a part.
   */
  private complete(t: TgtTarget, row: ExportRow): boolean {
    return t.luns.get(1) === this.o.pathOf(row.volume_id) && t.accounts.includes(row.chap_user) && t.acls.includes(row.initiator);
  }

  /** Makes the export's target again, first removing a half-made one. */
  private async remake(row: ExportRow, partial: TgtTarget | undefined, targets: { tid: number }[]): Promise<void> {
    if (partial) {
      this.o.log.warn({ iqn: row.iqn, tid: partial.tid, luns: [...partial.luns.keys()], accounts: partial.accounts, acls: partial.acls }, 'remaking a half-made tgt target of an export');
      await this.o.tgt.deleteTarget(partial.tid);
    }
    await this.createTarget(row, partial ? targets.filter((t) => t.tid !== partial.tid) : targets);
  }

  private async createTarget(row: ExportRow, targets: { tid: number }[]): Promise<void> {
    let tid = Math.max(0, ...targets.map((t) => t.tid)) + 1;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.o.tgt.createTarget(tid, row.iqn);
        break;
      } catch (err) {
        // Another tgtd user took this tid meanwhile: take the next one.
        if (attempt >= 20) throw err;
        tid += 1 + Math.floor(Math.random() * 3);
      }
    }
    try {
      await this.o.tgt.addLun(tid, 1, this.o.pathOf(row.volume_id));
      const accounts = await this.o.tgt.accounts();
      if (!accounts.includes(row.chap_user)) await this.o.tgt.createAccount(row.chap_user, row.chap_secret);
      await this.o.tgt.bindAccount(tid, row.chap_user);
      await this.o.tgt.bindInitiator(tid, row.initiator);
    } catch (err) {
      await this.o.tgt.deleteTarget(tid).catch(() => undefined);
      throw new WireError('ExportFailed', `could not export ${row.volume_id} to ${row.initiator}: ${(err as Error).message}`, 500);
    }
    this.o.db.prepare('UPDATE exports SET tid = ? WHERE iqn = ?').run(tid, row.iqn);
    this.o.log.info({ volumeId: row.volume_id, initiator: row.initiator, iqn: row.iqn, tid }, 'volume exported');
  }

  async unexport(volumeId: string, initiator?: string): Promise<void> {
    await this.lock.run(async () => {
      const rows = this.rows(volumeId).filter((r) => initiator === undefined || r.initiator === initiator);
      if (!rows.length) return;
      const targets = await this.o.tgt.targets();
      for (const r of rows) {
        for (const t of targets.filter((x) => x.iqn === r.iqn)) await this.o.tgt.deleteTarget(t.tid);
        if ((await this.o.tgt.accounts()).includes(r.chap_user)) await this.o.tgt.deleteAccount(r.chap_user);
        this.o.db.prepare('DELETE FROM exports WHERE iqn = ?').run(r.iqn);
        this.o.log.info({ volumeId, initiator: r.initiator, iqn: r.iqn }, 'volume unexported');
      }
    });
  }

  /** Make tgtd match the database: no orphan target or account of ours, no missing one. */
  async reconcile(): Promise<{ removed: number; recreated: number }> {
    return this.lock.run(async () => {
      const rows = this.rows();
      const byIqn = new Map(rows.map((r) => [r.iqn, r]));
      const targets = await this.o.tgt.targets();
      let removed = 0;
      let recreated = 0;
      for (const t of targets) {
        if (!t.iqn.startsWith(this.iqnPrefix)) continue;
        if (!byIqn.has(t.iqn)) {
          await this.o.tgt.deleteTarget(t.tid);
          removed++;
          this.o.log.warn({ iqn: t.iqn, tid: t.tid }, 'removed a tgt target of this SC that no export records');
        }
      }
      const present = new Map(targets.map((t) => [t.iqn, t]));
      const wanted = new Set(rows.map((r) => r.chap_user));
      for (const user of await this.o.tgt.accounts()) {
        if (user.startsWith(`${this.o.prefix}.`) && !wanted.has(user)) await this.o.tgt.deleteAccount(user);
      }
      for (const r of rows) {
        const t = present.get(r.iqn);
        if (t && this.complete(t, r)) continue;
        await this.remake(r, t, await this.o.tgt.targets());
        recreated++;
      }
      if (removed || recreated) this.o.log.info({ removed, recreated }, 'reconciled tgt targets with the exports');
      return { removed, recreated };
    });
  }
}
