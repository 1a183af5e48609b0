// What an S3 action receives (the addressed bucket/key, decoded query, who signed, the body) and what
// it returns (status, headers, an XML document or a body). Handlers never touch fastify.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { CredentialLookup, Principal, S3XmlObject } from '@mallee/aws-protocol';
import type { ObjectStore } from '../store/types.js';

export interface BodyIntegrity {
  /** Hex SHA-256 the signature covered, checked against the bytes as they are stored. */
  sha256?: string;
  contentMd5?: string;
  expectedSize?: number;
}

export interface S3Request {
  method: string;
  bucket?: string;
  key?: string;
  query: Map<string, string>;
  headers: IncomingHttpHeaders;
  /** undefined for an anonymous request. */
  principal?: Principal;
  requestId: string;
  log: FastifyBaseLogger;
  store: ObjectStore;
  region: string;
  maxObjectSize: number;
  /** The payload (aws-chunked already decoded); consume it once. */
  body: Readable;
  integrity: BodyIntegrity;
  /** Resolves an access key (for credentials carried in the body: POST uploads). */
  lookupKey: CredentialLookup;
  images?: ImageSource;
  /** Reads a small body (XML documents) whole, checking its integrity; EntityTooLarge past limit. */
  readBody(limit?: number): Promise<Buffer>;
}

/** Decrypted bundled images (GetDecryptedImage), when this Walrus holds the cloud key. */
export interface ImageSource {
  /** The decrypted image (only the one with that SHA-256, when given), held until release(). */
  open(bucket: string, manifestKey: string, opts?: { sha256?: string }): Promise<{ path: string; bytes: number; sha256: string; release(): void }>;
  /** For /_mallee/metrics. */
  stats?(): Record<string, number>;
}

export interface S3Reply {
  status?: number;
  headers?: Record<string, string>;
  xml?: { root: string; body: S3XmlObject };
  body?: Readable | Buffer | string;
}

export type S3Target = 'service' | 'bucket' | 'object';

export interface S3Action {
  name: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  target: S3Target;
  /** Query parameter that selects this action (a sub-resource like `acl`, `uploads`). */
  sub?: string;
  /** Further condition (e.g. a header such as x-amz-copy-source). */
  when?: (req: S3Request) => boolean;
  handler: (req: S3Request) => Promise<S3Reply> | S3Reply;
}
