// The SC's S3 client for Walrus (control over wire, bulk bytes over S3): path-style requests signed
// with SigV4 (aws-protocol's signer) as the block-storage system account, from keys/blockstorage.json.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { XMLParser } from 'fast-xml-parser';
import { signV4 } from '@mallee/aws-protocol';
import { admin, WireError } from '@mallee/wire';

export type S3Credentials = admin.BlockStorageCredentials;

export class S3Error extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'S3Error';
  }
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (n) => n === 'Contents' });
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const encKey = (key: string) => key.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');

/** Reads keys/blockstorage.json per use, so a registration after start needs no restart. */
export function credentialsFile(file: string): () => S3Credentials {
  return () => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new WireError('StorageNotConfigured', `no ${file}: register this storage controller with \`mallee register-sc\` (it writes the Walrus credentials)`, 503);
    }
    return admin.blockStorageCredentials.parse(JSON.parse(text));
  };
}

export class S3Client {
  constructor(private readonly creds: () => S3Credentials, private readonly timeoutMs = 120_000) {}

  get bucket(): string {
    return this.creds().bucket;
  }

  private async send(method: string, bucket: string, key: string, opts: { body?: Buffer | string; query?: string; bodyHash?: string } = {}): Promise<Response> {
    const c = this.creds();
    const base = new URL(c.walrusUrl);
    const prefix = base.pathname.replace(/\/$/, '');
    const path = `${prefix}/${bucket}${key ? `/${encKey(key)}` : ''}`;
    const body = opts.body ?? '';
    const { headers, query } = signV4({
      method,
      path,
      query: opts.query ?? '',
      headers: { host: base.host, 'x-amz-content-sha256': opts.bodyHash ?? sha256(body) },
      body,
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      region: 'mallee',
      service: 's3',
      doubleEncodePath: false,
    });
    const url = `${base.protocol}//${base.host}${path}${query ? `?${query}` : ''}`;
    try {
      return await fetch(url, { method, headers, body: method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new S3Error(503, 'ServiceUnavailable', `Walrus at ${c.walrusUrl} unreachable: ${(err as Error).message}`);
    }
  }

  private async fail(res: Response, what: string): Promise<never> {
    const text = await res.text();
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? String(res.status);
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? text.slice(0, 200);
    throw new S3Error(res.status, code, `${what}: ${code}: ${message}`);
  }

  /** Creates the bucket when it does not exist yet (owned by the block-storage account). */
  async ensureBucket(bucket: string): Promise<void> {
    const head = await this.send('HEAD', bucket, '');
    await head.arrayBuffer();
    if (head.status === 200) return;
    const res = await this.send('PUT', bucket, '');
    if (res.status === 200 || res.status === 409) {
      await res.arrayBuffer();
      return;
    }
    await this.fail(res, `create bucket ${bucket}`);
  }

  async put(bucket: string, key: string, body: Buffer, bodyHash?: string): Promise<void> {
    const res = await this.send('PUT', bucket, key, { body, bodyHash: bodyHash ?? sha256(body) });
    if (res.status !== 200) await this.fail(res, `PUT ${bucket}/${key}`);
    await res.arrayBuffer();
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    const res = await this.send('GET', bucket, key);
    if (res.status !== 200) await this.fail(res, `GET ${bucket}/${key}`);
    return Buffer.from(await res.arrayBuffer());
  }

  /** Deleting what is not there succeeds, as in S3. */
  async delete(bucket: string, key: string): Promise<void> {
    const res = await this.send('DELETE', bucket, key);
    if (res.status !== 204 && res.status !== 200 && res.status !== 404) await this.fail(res, `DELETE ${bucket}/${key}`);
    await res.arrayBuffer();
  }

  /** Every key (and size) under a prefix (ListObjectsV2, paged). */
  async list(bucket: string, prefix: string): Promise<{ key: string; size: number }[]> {
    const out: { key: string; size: number }[] = [];
    let token: string | undefined;
    do {
      const q = [`list-type=2`, `prefix=${encodeURIComponent(prefix)}`, ...(token ? [`continuation-token=${encodeURIComponent(token)}`] : [])].sort().join('&');
      const res = await this.send('GET', bucket, '', { query: q });
      if (res.status !== 200) await this.fail(res, `LIST ${bucket}/${prefix}`);
      const doc = parser.parse(await res.text()) as { ListBucketResult?: { Contents?: { Key: string; Size: string }[]; NextContinuationToken?: string; IsTruncated?: string } };
      const r = doc.ListBucketResult ?? {};
      for (const c of r.Contents ?? []) out.push({ key: c.Key, size: Number(c.Size) });
      token = r.IsTruncated === 'true' ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }
}
