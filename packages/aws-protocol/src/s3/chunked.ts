// `Content-Encoding: aws-chunked` bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD and the unsigned/trailer
// variants) decoded as a stream transform: chunk data flows on as it arrives while each chunk's hash is
// taken, and its chained signature is checked at the chunk's end. A bad signature fails the stream, so
// the consumer (which commits only at the end) never keeps a forged object.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { StreamingSeed } from '../sigv4.js';
import { S3Error } from './errors.js';

export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
export const STREAMING_MODES: readonly string[] = [STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER];

const MAX_LINE = 8192;
const MAX_TRAILER_BYTES = 16 * 1024;

export interface AwsChunkedOptions {
  /** The x-amz-content-sha256 streaming mode. */
  mode: string;
  /** Required for the signed modes: from verifySigV4's `streaming`. */
  seed?: Pick<StreamingSeed, 'signingKey' | 'amzDate' | 'scope' | 'seedSignature'>;
  /** x-amz-decoded-content-length, checked at the end when given. */
  decodedLength?: number;
}

const incomplete = () => new S3Error('IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header');
const malformed = (why: string) => new S3Error('InvalidRequest', `Malformed aws-chunked body: ${why}`);
const badChunkSignature = () =>
  new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');

type State = 'header' | 'data' | 'crlf' | 'trailer' | 'done';

/** Transform from the aws-chunked wire form to the object's bytes. `trailers` holds the trailing headers once finished. */
export class AwsChunkedDecoder extends Transform {
  readonly trailers = new Map<string, string>();
  private state: State = 'header';
  private line = Buffer.alloc(0);
  private remaining = 0;
  private chunkHash = createHash('sha256');
  private chunkSig: string | undefined;
  private previousSig: string;
  private decoded = 0;
  private trailerBytes = 0;
  private readonly signed: boolean;

  constructor(private readonly opts: AwsChunkedOptions) {
    super();
    if (!STREAMING_MODES.includes(opts.mode)) throw new S3Error('InvalidArgument', `x-amz-content-sha256 mode ${opts.mode} is not supported`);
    this.signed = opts.mode !== STREAMING_UNSIGNED_TRAILER;
    if (this.signed && !opts.seed) throw new Error('a signed aws-chunked stream needs its seed signature');
    this.previousSig = opts.seed?.seedSignature ?? '';
  }

  /** Bytes of object data decoded so far. */
  get decodedLength(): number {
    return this.decoded;
  }

  override _transform(buf: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(buf);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    // A stream may end right after the final chunk's header line (no blank line and no trailers).
    if (this.state === 'trailer' && this.line.length === 0) this.state = 'done';
    if (this.state !== 'done') return cb(incomplete());
    if (this.opts.decodedLength !== undefined && this.decoded !== this.opts.decodedLength) return cb(incomplete());
    cb();
  }

  /** Reads one CRLF-terminated line from buf at offset; returns the new offset, or -1 when more bytes are needed. */
  private readLine(buf: Buffer, at: number): [string | undefined, number] {
    const nl = buf.indexOf(0x0a, at);
    const end = nl < 0 ? buf.length : nl + 1;
    if (this.line.length + (end - at) > MAX_LINE) throw malformed('chunk header too long');
    this.line = Buffer.concat([this.line, buf.subarray(at, end)]);
    if (nl < 0) return [undefined, end];
    const text = this.line.toString('latin1').replace(/\r?\n$/, '');
    this.line = Buffer.alloc(0);
    return [text, end];
  }

  private consume(buf: Buffer): void {
    let at = 0;
    while (at < buf.length) {
      switch (this.state) {
        case 'header': {
          const [text, next] = this.readLine(buf, at);
          at = next;
          if (text === undefined) break;
          this.startChunk(text);
          break;
        }
        case 'data': {
          const n = Math.min(this.remaining, buf.length - at);
          const piece = buf.subarray(at, at + n);
          this.chunkHash.update(piece);
          this.push(piece);
          this.decoded += n;
          this.remaining -= n;
          at += n;
          if (this.remaining === 0) this.state = 'crlf';
          break;
        }
        case 'crlf': {
          const [text, next] = this.readLine(buf, at);
          at = next;
          if (text === undefined) break;
          if (text !== '') throw malformed('chunk data longer than its declared size');
          this.endChunk();
          this.state = 'header';
          break;
        }
        case 'trailer': {
          const [text, next] = this.readLine(buf, at);
          this.trailerBytes += next - at;
          at = next;
          if (this.trailerBytes > MAX_TRAILER_BYTES) throw malformed('trailers too long');
          if (text === undefined) break;
          if (text === '') {
            this.finishTrailers();
            this.state = 'done';
            break;
          }
          const colon = text.indexOf(':');
          if (colon <= 0) throw malformed('bad trailer line');
          this.trailers.set(text.slice(0, colon).trim().toLowerCase(), text.slice(colon + 1).trim());
          break;
        }
        case 'done':
          // Bytes after the terminating blank line are not part of the object.
          if (buf.subarray(at).some((b) => b !== 0x0d && b !== 0x0a)) throw malformed('data after the final chunk');
          at = buf.length;
          break;
      }
    }
  }

  private startChunk(text: string): void {
    const semi = text.indexOf(';');
    const sizeText = (semi < 0 ? text : text.slice(0, semi)).trim();
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) throw malformed(`bad chunk size '${sizeText.slice(0, 20)}'`);
    const size = parseInt(sizeText, 16);
    if (!Number.isSafeInteger(size)) throw malformed('chunk size too large');
    if (this.signed) {
      const m = /;\s*chunk-signature=([0-9a-fA-F]{64})\s*$/.exec(text);
      if (!m) throw new S3Error('IncompleteSignature', 'aws-chunked chunk is missing its chunk-signature');
      this.chunkSig = m[1]!;
    }
    this.chunkHash = createHash('sha256');
    this.remaining = size;
    if (size === 0) {
      this.endChunk();
      this.state = 'trailer';
    } else this.state = 'data';
  }

  private endChunk(): void {
    if (!this.signed) return;
    const seed = this.opts.seed!;
    // verifyChunkSignature hashes the chunk itself; we streamed it, so compare against the running hash.
    const digest = this.chunkHash.digest('hex');
    if (!chunkSignatureMatches(seed, this.previousSig, digest, this.chunkSig!)) throw badChunkSignature();
    this.previousSig = this.chunkSig!.toLowerCase();
  }

  private finishTrailers(): void {
    if (this.opts.mode !== STREAMING_SIGNED_TRAILER) return;
    const given = this.trailers.get('x-amz-trailer-signature');
    if (given === undefined) throw new S3Error('IncompleteSignature', 'aws-chunked trailer is missing x-amz-trailer-signature');
    const canonical = [...this.trailers].filter(([k]) => k !== 'x-amz-trailer-signature').map(([k, v]) => `${k}:${v}\n`).join('');
    const seed = this.opts.seed!;
    const sts = `AWS4-HMAC-SHA256-TRAILER\n${seed.amzDate}\n${seed.scope}\n${this.previousSig}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const expected = createHmac('sha256', seed.signingKey).update(sts).digest();
    if (!/^[0-9a-fA-F]{64}$/.test(given) || !timingSafeEqual(expected, Buffer.from(given, 'hex'))) throw badChunkSignature();
  }
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Chunk signature check from the chunk's SHA-256 (hex), for streamed chunks. */
export function chunkSignatureMatches(seed: Pick<StreamingSeed, 'signingKey' | 'amzDate' | 'scope'>, previousSignature: string, chunkSha256: string, given: string): boolean {
  const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${seed.amzDate}\n${seed.scope}\n${previousSignature}\n${EMPTY_SHA256}\n${chunkSha256}`;
  if (!/^[0-9a-fA-F]{64}$/.test(given)) return false;
  return timingSafeEqual(createHmac('sha256', seed.signingKey).update(sts).digest(), Buffer.from(given, 'hex'));
}

