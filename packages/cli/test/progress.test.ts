import { describe, expect, it } from 'vitest';
import { formatBytes, progress, waitWithProgress, type WaitState } from '../src/progress.js';

function sink() {
  const chunks: string[] = [];
  return { stream: { write: (s: string) => (chunks.push(s), true), isTTY: false } as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

describe('CLI progress', () => {
  it('off a terminal, prints a line per 10% and a closing line', () => {
    const s = sink();
    const p = progress({ label: 'uploading part', total: 100, unit: 'items', stream: s.stream });
    for (let i = 1; i <= 100; i++) p.update(i);
    p.done('stored');
    const lines = s.text().trim().split('\n');
    expect(lines).toHaveLength(12);
    expect(lines[10]).toContain('100% 100/100');
    expect(lines[11]).toBe('uploading part: stored');
  });
  it('on a terminal, redraws one line and ends it with the failure', () => {
    const s = sink();
    const p = progress({ label: 'bundling', total: 2048, unit: 'bytes', stream: s.stream, tty: true });
    p.advance(1024);
    p.fail('disk full');
    expect(s.text()).toContain('\r\x1b[2Kbundling [');
    expect(s.text()).toContain('1.0 KiB/2.0 KiB');
    expect(s.text().endsWith(' failed: disk full\n')).toBe(true);
  });
  it('off a terminal, an unknown amount prints a line when its status changes, at most every heartbeat otherwise', async () => {
    const s = sink();
    const p = progress({ label: 'waiting', unit: 'seconds', stream: s.stream, heartbeatMs: 50 });
    p.status('nc: starting');
    p.update(1);
    p.update(2); // same status, heartbeat not due: nothing
    await new Promise((r) => setTimeout(r, 60));
    p.update(3); // heartbeat due
    p.status('nc: ENABLED');
    p.done('ready');
    expect(s.text().trim().split('\n')).toEqual(['waiting: 0 s nc: starting', 'waiting: 3 s nc: starting', 'waiting: 3 s nc: ENABLED', 'waiting: ready']);
  });
  it('quiet prints nothing', () => {
    const s = sink();
    const p = progress({ label: 'x', total: 10, stream: s.stream, quiet: true });
    p.update(10);
    p.done();
    expect(s.text()).toBe('');
  });
  it('a wait gives a component that says it is starting the longer window, then the ordinary one from then on', async () => {
    const s = sink();
    // Starting for 400 ms (twice the ordinary window), then down for 50 ms, then there.
    const t0 = Date.now();
    const check = async (): Promise<WaitState<true>> => {
      const t = Date.now() - t0;
      if (t < 400) return { state: 'starting', starting: true };
      if (t < 450) return { state: 'NOTREADY' };
      return { value: true, state: 'ENABLED' };
    };
    expect(await waitWithProgress('up', check, { timeoutMs: 200, startingTimeoutMs: 5000, intervalMs: 20, stream: s.stream })).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(s.text()).toContain('up: ENABLED');
  });
  it('a wait on something merely down fails after the ordinary window with the last state; a fatal state fails at once', async () => {
    const s = sink();
    await expect(waitWithProgress('up', async () => ({ state: 'nc: NOTREADY (refused)' }), { timeoutMs: 40, startingTimeoutMs: 10_000, intervalMs: 10, stream: s.stream }))
      .rejects.toThrow(/up: still nc: NOTREADY \(refused\) after \d+ s/);
    let calls = 0;
    await expect(waitWithProgress('up', async () => (calls++, { state: 'nc exited', fatal: 'nc exited: see nc.log' }), { timeoutMs: 10_000, stream: s.stream }))
      .rejects.toThrow('up: nc exited: see nc.log');
    expect(calls).toBe(1);
  });
  it('formats bytes', () => {
    expect([formatBytes(5), formatBytes(1536), formatBytes(5 << 20)]).toEqual(['5 B', '1.5 KiB', '5.0 MiB']);
  });
});
