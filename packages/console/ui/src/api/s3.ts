// S3 calls to Walrus through the clc's /services/Walrus proxy (same origin), signed with the user's
// keys. Uploads go through XMLHttpRequest for progress; downloads use presigned URLs so the browser
// streams them to disk.
import { ApiError, parseXml } from './ec2.js';
import { signer, type Session } from './session.js';

export const S3_PATH = '/services/Walrus';

/** Path segments encoded as aws4fetch canonicalizes S3 paths (RFC 3986), so the path we send is the one signed. */
const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
export function objectUrl(bucket: string, key = '', query = ''): string {
  const path = [S3_PATH, enc(bucket), ...(key ? key.split('/').map(enc) : [])].join('/');
  return new URL(path + (query ? `?${query}` : ''), location.origin).href;
}

async function s3(session: Session, url: string, init: RequestInit = {}): Promise<Response> {
  const res = await signer(session, 's3').fetch(url, init);
  if (!res.ok) {
    const text = await res.text();
    const doc = text ? parseXml(text) : undefined;
    throw new ApiError(doc?.querySelector('Error > Code')?.textContent ?? `HTTP${res.status}`, doc?.querySelector('Error > Message')?.textContent ?? res.statusText, res.status);
  }
  return res;
}

const texts = (el: Element, sel: string) => Array.from(el.querySelectorAll(sel));
const child = (el: Element, name: string) => el.getElementsByTagName(name)[0]?.textContent ?? '';

export interface Bucket {
  name: string;
  created: string;
}

export async function listBuckets(session: Session): Promise<Bucket[]> {
  const doc = parseXml(await (await s3(session, new URL(`${S3_PATH}/`, location.origin).href)).text());
  return texts(doc.documentElement, 'Buckets > Bucket').map((b) => ({ name: child(b, 'Name'), created: child(b, 'CreationDate') }));
}

export async function createBucket(session: Session, name: string): Promise<void> {
  await s3(session, objectUrl(name), { method: 'PUT' });
}

export async function deleteBucket(session: Session, name: string): Promise<void> {
  await s3(session, objectUrl(name), { method: 'DELETE' });
}

export interface Listing {
  prefixes: string[];
  objects: { key: string; size: number; modified: string; etag: string }[];
  nextToken?: string;
}

/** One level of a bucket under prefix ("folders" are common prefixes of "/"). */
export async function listObjects(session: Session, bucket: string, prefix: string, token?: string): Promise<Listing> {
  const q = new URLSearchParams({ 'list-type': '2', delimiter: '/', prefix, 'max-keys': '1000' });
  if (token) q.set('continuation-token', token);
  const doc = parseXml(await (await s3(session, objectUrl(bucket, '', q.toString().replace(/\+/g, '%20')))).text());
  const root = doc.documentElement;
  const next = child(root, 'NextContinuationToken');
  return {
    prefixes: texts(root, 'CommonPrefixes > Prefix').map((p) => p.textContent ?? ''),
    objects: texts(root, 'Contents').map((c) => ({ key: child(c, 'Key'), size: Number(child(c, 'Size')), modified: child(c, 'LastModified'), etag: child(c, 'ETag') })),
    ...(next ? { nextToken: next } : {}),
  };
}

export async function deleteObject(session: Session, bucket: string, key: string): Promise<void> {
  await s3(session, objectUrl(bucket, key), { method: 'DELETE' });
}

/** A presigned GET (valid 15 minutes) the browser can download directly. */
export async function downloadUrl(session: Session, bucket: string, key: string): Promise<string> {
  const url = new URL(objectUrl(bucket, key));
  url.searchParams.set('X-Amz-Expires', '900');
  const req = await signer(session, 's3').sign(url.href, { method: 'GET', aws: { signQuery: true } });
  return req.url;
}

/** PUT the file, reporting progress (bytes sent, total); resolves when Walrus has stored it. */
export async function uploadObject(session: Session, bucket: string, key: string, file: Blob, onProgress: (sent: number, total: number) => void, signal?: AbortSignal): Promise<void> {
  const type = file.type || 'application/octet-stream';
  const req = await signer(session, 's3').sign(objectUrl(bucket, key), { method: 'PUT', headers: { 'content-type': type } });
  await new Promise<void>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', req.url);
    req.headers.forEach((v, k) => {
      if (k !== 'host' && k !== 'content-length') xhr.setRequestHeader(k, v);
    });
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      const doc = xhr.responseText ? parseXml(xhr.responseText) : undefined;
      reject(new ApiError(doc?.querySelector('Error > Code')?.textContent ?? `HTTP${xhr.status}`, doc?.querySelector('Error > Message')?.textContent ?? xhr.statusText, xhr.status));
    };
    xhr.onerror = () => reject(new ApiError('NetworkError', 'the upload was interrupted', 0));
    xhr.onabort = () => reject(new ApiError('Aborted', 'the upload was cancelled', 0));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(file);
  });
}
