// GetDecryptedImage (Eucalyptus's Walrus operation): `GET /bucket/path/image.manifest.xml?decrypted`
// answers the decrypted image of that bundle. Only cloud admins may ask (NCs fetch images through URLs
// the clc presigns with its image-delivery key); everyone else gets AccessDenied, as the bundle's
// owner only ever sees parts. The image's SHA-256 travels in x-amz-meta-sha256 for the NC to check.
import { createReadStream } from 'node:fs';
import { S3Error } from '@mallee/aws-protocol';
import type { S3Action } from '../s3/context.js';

export const getDecryptedImageAction: S3Action = {
  name: 'GetDecryptedImage',
  method: 'GET',
  target: 'object',
  sub: 'decrypted',
  handler: async (req) => {
    if (!req.principal?.isAdmin) throw new S3Error('AccessDenied', 'Access Denied');
    if (!req.images) throw new S3Error('NotImplemented', 'This Walrus does not decrypt images', {}, 501);
    const image = await req.images.get(req.bucket!, req.key!);
    return {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(image.bytes), 'x-amz-meta-sha256': image.sha256 },
      body: createReadStream(image.path, { highWaterMark: 1 << 20 }),
    };
  },
};
