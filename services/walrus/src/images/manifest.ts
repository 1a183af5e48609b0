// EC2/Eucalyptus bundle manifests (`*.manifest.xml`, ec2-bundle-image / euca-bundle-image format):
// the RSA-wrapped AES key and IV, the image digest and the ordered list of parts with their digests.
import { S3Error, parseS3Xml, xmlList, xmlText } from '@mallee/aws-protocol';

export interface BundlePart {
  index: number;
  filename: string;
  /** SHA-1 hex of the part file. */
  digest: string;
}

export interface BundleManifest {
  imageName: string;
  /** Hex of the AES key hex-string, RSA-encrypted to the cloud's certificate. */
  ec2EncryptedKey: string;
  ec2EncryptedIv: string;
  /** SHA-1 hex of the tar stream inside the bundle. */
  imageDigest: string;
  imageSize?: number;
  parts: BundlePart[];
}

const invalid = (why: string) => new S3Error('InvalidManifest', `The image manifest is not valid: ${why}`);
const hex = (s: string | undefined, what: string) => {
  if (s === undefined || !/^[0-9a-fA-F]+$/.test(s.trim())) throw invalid(`${what} is missing or not hex`);
  return s.trim().toLowerCase();
};

export function parseManifest(xml: string): BundleManifest {
  let doc: Record<string, unknown>;
  try {
    doc = parseS3Xml(xml, 'manifest');
  } catch {
    throw invalid('not a <manifest> XML document');
  }
  const image = doc['image'];
  if (typeof image !== 'object' || image === null) throw invalid('no <image> element');
  const partsNode = (image as Record<string, unknown>)['parts'];
  const parts = xmlList(partsNode, 'part').map((p): BundlePart => {
    const node = p as Record<string, unknown>;
    const index = Number(node['@index']);
    const filename = xmlText(p, 'filename');
    if (!Number.isInteger(index) || index < 0 || !filename || filename.includes('/') || filename.includes('..')) throw invalid('bad <part>');
    return { index, filename, digest: hex(xmlText(p, 'digest'), `digest of part ${index}`) };
  });
  if (parts.length === 0) throw invalid('no parts');
  parts.sort((a, b) => a.index - b.index);
  if (parts.some((p, i) => p.index !== i)) throw invalid('part indexes are not 0..n-1');
  const size = xmlText(image, 'size');
  return {
    imageName: xmlText(image, 'name') ?? '',
    ec2EncryptedKey: hex(xmlText(image, 'ec2_encrypted_key'), 'ec2_encrypted_key'),
    ec2EncryptedIv: hex(xmlText(image, 'ec2_encrypted_iv'), 'ec2_encrypted_iv'),
    imageDigest: hex(xmlText(image, 'digest'), 'image digest'),
    ...(size !== undefined && /^\d+$/.test(size) ? { imageSize: Number(size) } : {}),
    parts,
  };
}
