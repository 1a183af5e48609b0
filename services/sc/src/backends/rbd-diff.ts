// `rbd export-diff` streams (format "rbd diff v1"), rewritten on the way into Walrus: the zero blocks of a
// data record become zero records. For objects new since the previous snapshot RBD reports the whole
// allocated range between the writes (two 4 KiB writes 1 MiB apart: one 1 MiB record, the rest zeros), so
// without this an increment of scattered writes carries mostly zeros. `rbd import-diff` of a zero record
// zeroes the range: the same volume.
// Records: 'f'/'t' u32 length + snapshot name, 's' u64 size, 'w' u64 offset u64 length + data, 'z' u64
// offset u64 length, 'e' end; little-endian (Ceph's doc/dev/rbd-diff.rst).

const HEADER = Buffer.from('rbd diff v1\n');
/** Zero runs shorter than this stay in the data (a record costs 17 bytes; tiny runs are not worth splitting). */
const BLOCK = 4096;

const ZERO = Buffer.alloc(BLOCK);
const isZero = (buf: Buffer): boolean => buf.equals(ZERO.subarray(0, buf.length));

function record(tag: 'w' | 'z', offset: bigint, data: Buffer | bigint): Buffer {
  const head = Buffer.alloc(17);
  head.write(tag, 0);
  head.writeBigUInt64LE(offset, 1);
  head.writeBigUInt64LE(typeof data === 'bigint' ? data : BigInt(data.length), 9);
  return typeof data === 'bigint' ? head : Buffer.concat([head, data]);
}

/** The data record at `offset` as data and zero records, at BLOCK granularity. */
function* split(offset: bigint, data: Buffer): Generator<Buffer> {
  const emit = (from: number, to: number, zero: boolean) => (zero ? record('z', offset + BigInt(from), BigInt(to - from)) : record('w', offset + BigInt(from), data.subarray(from, to)));
  let runStart = 0;
  let runZero: boolean | undefined;
  for (let at = 0; at < data.length; at += BLOCK) {
    const zero = isZero(data.subarray(at, Math.min(data.length, at + BLOCK)));
    if (runZero !== undefined && zero !== runZero) {
      yield emit(runStart, at, runZero);
      runStart = at;
    }
    runZero = zero;
  }
  if (runZero !== undefined) yield emit(runStart, data.length, runZero);
}

/** Reads exactly n bytes from the pieces of an async iterator, keeping the rest for the next read. */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  async read(n: number): Promise<Buffer | undefined> {
    while (this.buf.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    }
    if (this.buf.length < n) {
      if (this.buf.length === 0 && n > 0) return undefined;
      throw new Error(`rbd export-diff stream ends inside a record (${this.buf.length} of ${n} bytes)`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** What is buffered and whatever follows, unchanged. */
  async *rest(): AsyncGenerator<Buffer> {
    if (this.buf.length) yield this.buf;
    this.buf = Buffer.alloc(0);
    for (let r = await this.it.next(); !r.done; r = await this.it.next()) yield r.value;
  }
}

/** The stream with zero blocks of data records as zero records; a stream of another format passes unchanged. */
export async function* compactZeros(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const r = new Reader(stream[Symbol.asyncIterator]());
  const header = await r.read(HEADER.length).catch(() => undefined);
  if (!header) {
    yield* r.rest();
    return;
  }
  yield header;
  if (!header.equals(HEADER)) {
    yield* r.rest();
    return;
  }
  for (;;) {
    const tag = await r.read(1);
    if (!tag) throw new Error('rbd export-diff stream without its end record');
    const t = String.fromCharCode(tag[0]!);
    if (t === 'e') {
      yield tag;
      yield* r.rest();
      return;
    }
    if (t === 'f' || t === 't') {
      const len = (await r.read(4))!;
      yield Buffer.concat([tag, len, (await r.read(len.readUInt32LE(0)))!]);
    } else if (t === 's') {
      yield Buffer.concat([tag, (await r.read(8))!]);
    } else if (t === 'z') {
      yield Buffer.concat([tag, (await r.read(16))!]);
    } else if (t === 'w') {
      const head = (await r.read(16))!;
      const offset = head.readBigUInt64LE(0);
      const length = Number(head.readBigUInt64LE(8));
      yield* split(offset, (await r.read(length))!);
    } else {
      throw new Error(`rbd export-diff stream: unknown record '${t}'`);
    }
  }
}
