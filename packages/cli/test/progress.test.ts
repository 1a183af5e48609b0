import { describe, expect, it } from 'vitest';
import { formatBytes, progress } from '../src/progress.js';

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
  it('formats bytes', () => {
    expect([formatBytes(5), formatBytes(1536), formatBytes(5 << 20)]).toEqual(['5 B', '1.5 KiB', '5.0 MiB']);
  });
});
