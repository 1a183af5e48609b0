// Progress for long CLI work (uploads, bundling, image builds, waits), shared by every `mallee`
// command: a redrawn bar on a terminal; elsewhere (logs, CI) a line every 10% of a known total, a line
// whenever the status text changes, and for work of unknown size a line at most every heartbeatMs.
// Always on stderr, so stdout stays clean for --output json.

export interface Progress {
  /** Set how much is done (same unit as total). */
  update(done: number): void;
  /** Add to what is done. */
  advance(by: number): void;
  /** What is going on now, shown after the numbers (off a terminal, a new status prints a line). */
  status(text: string): void;
  /** Finish the line with a closing message. */
  done(message?: string): void;
  /** Finish the line saying what failed. */
  fail(message: string): void;
}

export interface ProgressOptions {
  /** What is being done, e.g. "uploading image.part.0". */
  label: string;
  /** Total amount of work; undefined for an unknown amount (a counter is shown). */
  total?: number;
  /** "bytes" shows KiB/MiB and a rate; "items" shows counts; "seconds" shows elapsed time (waits). */
  unit?: 'bytes' | 'items' | 'seconds';
  stream?: NodeJS.WriteStream;
  /** Force (or suppress) the redrawn bar; default: stream.isTTY. */
  tty?: boolean;
  /** Print nothing at all (library callers, --quiet). */
  quiet?: boolean;
  /** Off a terminal, for an unknown total: the longest time between two lines while nothing changes (default 10 s). */
  heartbeatMs?: number;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const silent: Progress = { update: () => undefined, advance: () => undefined, status: () => undefined, done: () => undefined, fail: () => undefined };

export function progress(opts: ProgressOptions): Progress {
  if (opts.quiet) return silent;
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? !!stream.isTTY;
  const fmt = (n: number) => (opts.unit === 'bytes' ? formatBytes(n) : opts.unit === 'seconds' ? `${n.toFixed(0)} s` : String(n));
  const heartbeat = opts.heartbeatMs ?? 10_000;
  const known = opts.total !== undefined && opts.total > 0;
  const started = Date.now();
  let current = 0;
  let statusText = '';
  let lastStep = -1;
  let lastDraw = 0;
  let lastLine = 0;
  let finished = false;
  const line = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = opts.unit === 'bytes' ? ` ${formatBytes(current / secs)}/s` : '';
    const st = statusText ? ` ${statusText}` : '';
    if (!known) return `${opts.label}: ${fmt(current)}${rate}${st}`;
    const frac = Math.min(1, current / opts.total!);
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    return `${opts.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(current)}/${fmt(opts.total!)}${rate}${st}`;
  };
  const draw = (force = false) => {
    if (finished) return;
    if (tty) {
      if (!force && Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      stream.write(`\r\x1b[2K${line()}`);
      return;
    }
    const step = known ? Math.floor((10 * current) / opts.total!) : -1;
    const due = known ? step > lastStep : Date.now() - lastLine >= heartbeat;
    if (force || due) {
      lastStep = step;
      lastLine = Date.now();
      stream.write(`${line()}\n`);
    }
  };
  const end = (suffix: string) => {
    if (finished) return;
    // Off a terminal, an unknown amount needs no last count: the closing line says it.
    if (tty || (known && lastStep !== 10)) draw(true);
    finished = true;
    stream.write(tty ? ` ${suffix}\n` : `${opts.label}: ${suffix}\n`);
  };
  return {
    update: (n) => {
      current = n;
      draw();
    },
    advance: (by) => {
      current += by;
      draw();
    },
    status: (text) => {
      if (text === statusText) return draw();
      statusText = text;
      draw(true);
    },
    done: (message = 'done') => end(message),
    fail: (message) => end(`failed: ${message}`),
  };
}

export interface WaitState<T> {
  /** The awaited value: the wait is over. */
  value?: T;
  /** What is seen now (shown, and named in the error on timeout). */
  state: string;
  /** Give up at once with this message (e.g. a daemon died). */
  fatal?: string;
  /** What is awaited says it is still starting (not stuck): the wait may go on up to startingTimeoutMs. */
  starting?: boolean;
}

/**
 * Waits for check() to return a value, showing how long it has waited and the latest state; throws with
 * the last state after timeoutMs — or after startingTimeoutMs while the latest state says `starting`
 * (a daemon busy with its start-up is given longer than one that is simply down), and then timeoutMs
 * more from the last time it said so.
 */
export async function waitWithProgress<T>(
  label: string,
  check: () => Promise<WaitState<T>>,
  opts: { timeoutMs: number; startingTimeoutMs?: number; intervalMs?: number; stream?: NodeJS.WriteStream; tty?: boolean; quiet?: boolean },
): Promise<T> {
  const p = progress({ label, unit: 'seconds', ...(opts.stream ? { stream: opts.stream } : {}), ...(opts.tty !== undefined ? { tty: opts.tty } : {}), ...(opts.quiet ? { quiet: true } : {}) });
  const started = Date.now();
  let state = '';
  let lastStarting = 0;
  for (;;) {
    let r: WaitState<T>;
    try {
      r = await check();
    } catch (err) {
      p.fail((err as Error).message);
      throw err;
    }
    state = r.state;
    if (r.value !== undefined) {
      p.done(state);
      return r.value;
    }
    const waited = Date.now() - started;
    if (r.fatal) {
      p.fail(state);
      throw new Error(`${label}: ${r.fatal}`);
    }
    // The ordinary window counts from the last time it was still starting.
    if (r.starting) lastStarting = waited;
    const timeout = r.starting ? Math.max(opts.timeoutMs, opts.startingTimeoutMs ?? 0) : lastStarting + opts.timeoutMs;
    if (waited >= timeout) {
      p.fail(`still ${state} after ${Math.round(waited / 1000)} s`);
      throw new Error(`${label}: still ${state} after ${Math.round(waited / 1000)} s`);
    }
    p.status(`— ${state}`);
    p.update(waited / 1000);
    await new Promise((res) => setTimeout(res, opts.intervalMs ?? 1000));
  }
}
