// Which clc polls. Several clc processes may share one PostgreSQL database (DB_URL); each answers API
// calls, but only the one holding the poller lease (a session advisory lock, freed when its holder dies or
// loses its connection) moves instance, volume and snapshot states along, re-sends lost launches, settles
// attachments and purges — as Eucalyptus runs one ENABLED clc. The others keep polling only for their own
// view (zone capacity, contact), so RunInstances on any of them sees the cluster as it is. When the holder
// goes, the next round of another clc takes the lease (at most POLL_INTERVAL later). On SQLite there is one
// clc: it always holds it. Transactions, not the lease, keep the data right when two rounds overlap (a
// holder that lost its connection mid-round): the lease only keeps the work from being done twice.
import type { Logger } from 'pino';
import { holdsLease, type Db } from '@mallee/store';

const KEY = 'mallee-clc-poller';

export class PollerLease {
  private held = false;

  constructor(private readonly db: Db, private readonly log: Logger) {}

  /** Asks the database (before each round of polls): true while this clc holds the lease. */
  check(): boolean {
    let now: boolean;
    try {
      now = holdsLease(this.db, KEY);
    } catch (err) {
      this.log.warn({ err }, 'cannot ask the database for the poller lease; polling for this clc\'s view only');
      now = false;
    }
    if (now !== this.held) this.log.info(now ? 'took the poller lease: this clc moves states along' : 'lost the poller lease: another clc moves states along');
    this.held = now;
    return now;
  }

  /** What the last check said (metrics). */
  get holding(): boolean {
    return this.held;
  }
}
