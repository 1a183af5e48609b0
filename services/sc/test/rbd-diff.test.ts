// The export-diff rewriter on a stream made here in the format of Ceph's doc/dev/rbd-diff.rst (the real
// rbd's streams go through it in test/scale-out/sc-rbd.test.ts, restored byte-identical by import-diff).
import { describe, expect, it } from 'vitest';
import { compactZeros } from '../src/backends/rbd-diff.js';

const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
const u64 = (n: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
const w = (off: number, data: Buffer) => Buffer.concat([Buffer.from('w'), u64(off), u64(data.length), data]);
const z = (off: number, len: number) => Buffer.concat([Buffer.from('z'), u64(off), u64(len)]);
const name = (tag: 'f' | 't', s: string) => Buffer.concat([Buffer.from(tag), u32(s.length), Buffer.from(s)]);
const header = Buffer.from('rbd diff v1\n');

/** The stream in pieces of 1..97 bytes, as a pipe may deliver it. */
async function* pieces(buf: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0, n = 1; at < buf.length; at += n, n = (n * 7) % 97 + 1) yield buf.subarray(at, at + n);
}
const all = async (it: AsyncIterable<Buffer>) => { const out: Buffer[] = []; for await (const b of it) out.push(b); return Buffer.concat(out); };

describe('rbd export-diff zero compaction', () => {
  it('data records lose their zero blocks to zero records; names, size, zero records and the end pass unchanged', async () => {
    const a = Buffer.alloc(4096, 0xab);
    const tail = Buffer.alloc(1000, 0xcd);
    const data = Buffer.concat([a, Buffer.alloc(8192), a, Buffer.alloc(4096), tail]);
    const stream = Buffer.concat([header, name('f', 'snap-1'), name('t', 'snap-2'), Buffer.from('s'), u64(1 << 30), w(1 << 20, data), z(5 << 20, 65536), w(9 << 20, Buffer.alloc(8192)), Buffer.from('e')]);
    const out = await all(compactZeros(pieces(stream)));
    expect(out).toEqual(Buffer.concat([
      header, name('f', 'snap-1'), name('t', 'snap-2'), Buffer.from('s'), u64(1 << 30),
      w(1 << 20, a), z((1 << 20) + 4096, 8192), w((1 << 20) + 12288, a), z((1 << 20) + 16384, 4096), w((1 << 20) + 20480, tail),
      z(5 << 20, 65536), z(9 << 20, 8192), Buffer.from('e'),
    ]));
  });

  it('refuses a stream cut inside a record or without its end, and passes another format unchanged', async () => {
    const stream = Buffer.concat([header, w(0, Buffer.alloc(100, 1)), Buffer.from('e')]);
    await expect(all(compactZeros(pieces(stream.subarray(0, 40))))).rejects.toThrow(/ends inside a record/);
    await expect(all(compactZeros(pieces(stream.subarray(0, stream.length - 1))))).rejects.toThrow(/without its end record/);
    const other = Buffer.concat([Buffer.from('rbd diff v2\n'), Buffer.alloc(50, 7)]);
    expect(await all(compactZeros(pieces(other)))).toEqual(other);
  });
});
