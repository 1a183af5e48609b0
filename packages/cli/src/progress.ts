// Progress for long CLI work (uploads, bundling, image builds, waits), shared by every `mallee`
// command: a redrawn bar on a terminal, a line every 10% elsewhere (logs, CI), always on stderr so
// stdout stays clean for --output json.

export interface Progress {
  /** Set how much is done (same unit as total). */
  update(done: number): void;
  /** Add to what is done. */
  advance(by: number): void;
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
  /** "bytes" shows KiB/MiB and a rate; "items" shows counts. */
  unit?: 'bytes' | 'items';
  stream?: NodeJS.WriteStream;
  /** Force (or suppress) the redrawn bar; default: stream.isTTY. */
  tty?: boolean;
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

export function progress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? !!stream.isTTY;
  const fmt = (n: number) => (opts.unit === 'bytes' ? formatBytes(n) : String(n));
  const started = Date.now();
  let current = 0;
  let lastStep = -1;
  let lastDraw = 0;
  let finished = false;
  const line = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = opts.unit === 'bytes' ? ` ${formatBytes(current / secs)}/s` : '';
    if (opts.total === undefined || opts.total <= 0) return `${opts.label}: ${fmt(current)}${rate}`;
    const frac = Math.min(1, current / opts.total);
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    return `${opts.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(current)}/${fmt(opts.total)}${rate}`;
  };
  const draw = (force = false) => {
    if (finished) return;
    if (tty) {
      if (!force && Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      stream.write(`\r\x1b[2K${line()}`);
      return;
    }
    const step = opts.total ? Math.floor((10 * current) / opts.total) : -1;
    if (force || (opts.total && step > lastStep)) {
      lastStep = step;
      stream.write(`${line()}\n`);
    }
  };
  const end = (suffix: string) => {
    if (finished) return;
    if (tty || lastStep !== 10) draw(true);
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
    done: (message = 'done') => end(message),
    fail: (message) => end(`failed: ${message}`),
  };
}

/** Waits for check() to return a value, showing what is awaited; throws with the last state on timeout. */
export async function waitWithProgress<T>(label: string, check: () => Promise<{ value?: T; state: string }>, opts: { timeoutMs: number; intervalMs?: number; stream?: NodeJS.WriteStream }): Promise<T> {
  const p = progress({ label, ...(opts.stream ? { stream: opts.stream } : {}) });
  const deadline = Date.now() + opts.timeoutMs;
  let state = '';
  for (let polls = 1; Date.now() < deadline; polls++) {
    const r = await check();
    state = r.state;
    if (r.value !== undefined) {
      p.done(state);
      return r.value;
    }
    p.update(polls);
    await new Promise((res) => setTimeout(res, opts.intervalMs ?? 1000));
  }
  p.fail(`still ${state} after ${opts.timeoutMs / 1000}s`);
  throw new Error(`${label}: still ${state} after ${opts.timeoutMs / 1000}s`);
}
