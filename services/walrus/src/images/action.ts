// GetDecryptedImage (Eucalyptus's Walrus operation): `GET /bucket/path/image.manifest.xml?decrypted`
// answers the decrypted image of that bundle. Only cloud admins may ask (NCs fetch images through URLs
// the clc presigns with its image-delivery key); everyone else gets AccessDenied, as the bundle's
// owner only ever sees parts. The image's SHA-256 travels in x-amz-meta-sha256 for the NC to check.
// `image-sha256=<hex>` (in the clc's URLs: the SHA-256 recorded at registration) pins the answer to
// that image: PreconditionFailed when the bundle no longer is it and the cache no longer has it.
import { createReadStream } from 'node:fs';
import { S3Error } from '@mallee/aws-protocol';
import type { S3Action } from '../s3/context.js';

export const IMAGE_PIN_PARAM = 'image-sha256';

export const getDecryptedImageAction: S3Action = {
  name: 'GetDecryptedImage',
  method: 'GET',
  target: 'object',
  sub: 'decrypted',
  handler: async (req) => {
    if (!req.principal?.isAdmin) throw new S3Error('AccessDenied', 'Access Denied');
    if (!req.images) throw new S3Error('NotImplemented', 'This Walrus does not decrypt images', {}, 501);
    const pin = req.query.get(IMAGE_PIN_PARAM) ?? undefined;
    if (pin !== undefined && !/^[0-9a-f]{64}$/.test(pin)) throw new S3Error('InvalidArgument', `${IMAGE_PIN_PARAM} must be a SHA-256 in hex`, { ArgumentName: IMAGE_PIN_PARAM, ArgumentValue: pin });
    const image = await req.images.open(req.bucket!, req.key!, pin ? { sha256: pin } : {});
    // Held (never evicted) until the last byte is sent or the client goes away.
    const body = createReadStream(image.path, { highWaterMark: 1 << 20 });
    body.once('close', () => image.release());
    return {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(image.bytes), 'x-amz-meta-sha256': image.sha256 },
      body,
    };
  },
};
