// Which Blobs a Walrus daemon stores object bytes in: WALRUS_BACKEND=fs (files under <home>/walrus)
// or s3 (one bucket of an S3 store such as Ceph's radosgw, shared by every front end of the cloud).
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import { S3Blobs } from './s3-blobs.js';

/**
 * undefined = the files under the home. Test hook: with MALLEE_TEST_WALRUS_S3_ENDPOINT (+ _ACCESS_KEY,
 * _SECRET_KEY; npm run test:scale-out sets them) and WALRUS_BACKEND=fs, each home gets its own prefix
 * of the bucket mallee-test, so every test cloud runs on radosgw without its test knowing.
 */
export async function configuredBlobs(config: MalleeConfig, home: string, log: Logger): Promise<S3Blobs | undefined> {
  let blobs: S3Blobs;
  if (config.WALRUS_BACKEND === 's3') {
    if (!config.WALRUS_S3_ENDPOINT || !config.WALRUS_S3_ACCESS_KEY || !config.WALRUS_S3_SECRET_KEY) {
      throw new Error('WALRUS_BACKEND="s3" needs WALRUS_S3_ENDPOINT, WALRUS_S3_ACCESS_KEY and WALRUS_S3_SECRET_KEY in mallee.conf');
    }
    blobs = new S3Blobs({ endpoint: config.WALRUS_S3_ENDPOINT, accessKeyId: config.WALRUS_S3_ACCESS_KEY, secretAccessKey: config.WALRUS_S3_SECRET_KEY, bucket: config.WALRUS_S3_BUCKET, log });
  } else {
    const env = process.env;
    if (!env.MALLEE_TEST_WALRUS_S3_ENDPOINT) return undefined;
    blobs = new S3Blobs({
      endpoint: env.MALLEE_TEST_WALRUS_S3_ENDPOINT, accessKeyId: env.MALLEE_TEST_WALRUS_S3_ACCESS_KEY ?? '', secretAccessKey: env.MALLEE_TEST_WALRUS_S3_SECRET_KEY ?? '',
      bucket: 'mallee-test', prefix: `${createHash('sha256').update(resolve(home)).digest('hex').slice(0, 16)}/`, log,
    });
  }
  await blobs.ensureBucket();
  return blobs;
}
