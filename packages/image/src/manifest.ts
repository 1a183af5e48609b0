// EC2/Eucalyptus bundle manifests (`*.manifest.xml`, the ec2-bundle-image / euca-bundle-image format):
// what the image is (type, architecture, kernel/ramdisk), the AES key and IV wrapped for the cloud and
// for the user, the digest of the tar stream, the ordered parts with their SHA-1s, and the user's
// RSA-SHA1 signature over the exact text of <machine_configuration> followed by <image>.
//
// Everything a reader trusts comes from the signed text only: the document is parsed for its
// <signature>, but the image's facts are parsed out of the two signed elements themselves, so text
// outside them (comments, a second <image>) cannot change what a valid signature vouches for.
import { XMLParser } from 'fast-xml-parser';

export type ImageType = 'machine' | 'kernel' | 'ramdisk';
export const IMAGE_TYPES: readonly ImageType[] = ['machine', 'kernel', 'ramdisk'];

export interface BundlePart {
  index: number;
  filename: string;
  /** SHA-1 hex of the part file. */
  digest: string;
}

export interface BlockDeviceMapping {
  virtual: string;
  device: string;
}

export interface BundleManifest {
  architecture: string;
  imageType: ImageType;
  /** The machine image's kernel and ramdisk (eki-/aki-, eri-/ari- ids), when the bundle names them. */
  kernelId?: string;
  ramdiskId?: string;
  blockDeviceMappings: BlockDeviceMapping[];
  imageName: string;
  /** The bundling account (<image><user>). */
  accountId: string;
  /** Hex digest of the tar stream inside the bundle (SHA-1, as every bundler writes). */
  imageDigest: string;
  imageDigestAlgorithm: string;
  /** Size of the image file in bytes, and of the encrypted bundle (sum of the parts). */
  imageSize?: number;
  bundledSize?: number;
  /** Hex of the RSA-encrypted hex strings of the AES key and IV, for the cloud (ec2_) and the user. */
  ec2EncryptedKey: string;
  ec2EncryptedIv: string;
  userEncryptedKey?: string;
  userEncryptedIv?: string;
  parts: BundlePart[];
  /** Hex RSA-SHA1 signature over signedText. */
  signature: string;
  /** The exact text of <machine_configuration>…</machine_configuration><image>…</image>. */
  signedText: string;
}

/** A manifest that cannot be used: the message says why (for InvalidManifest errors). */
export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestError';
  }
}

const invalid = (why: string) => new ManifestError(why);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  isArray: (name) => ['part', 'mapping', 'block_device_mapping'].includes(name),
});

type Node = Record<string, unknown>;

function parse(xml: string): Node {
  try {
    return parser.parse(xml, true) as Node;
  } catch (e) {
    throw invalid(`not well-formed XML (${(e as Error).message.split('\n')[0]})`);
  }
}

function text(node: unknown, name: string): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const v = (node as Node)[name];
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) throw invalid(`more than one <${name}>`);
  if (typeof v === 'object') {
    const t = (v as Node)['#text'];
    return t === undefined ? '' : String(t).trim();
  }
  return String(v).trim();
}

function attr(node: unknown, name: string, attribute: string): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const v = (node as Node)[name];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? ((v as Node)[`@${attribute}`] as string | undefined) : undefined;
}

function child(node: unknown, name: string): Node | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const v = (node as Node)[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`<${name}> is not a single element`);
  return v as Node;
}

const hex = (s: string | undefined, what: string) => {
  if (s === undefined || !/^[0-9a-fA-F]+$/.test(s)) throw invalid(`${what} is missing or not hex`);
  return s.toLowerCase();
};

const optionalInt = (s: string | undefined, what: string) => {
  if (s === undefined || s === '') return undefined;
  if (!/^\d+$/.test(s)) throw invalid(`${what} is not a number`);
  return Number(s);
};

/** The exact text of the first <name>…</name> element of the document. */
function elementText(xml: string, name: string): string {
  const open = xml.indexOf(`<${name}>`);
  if (open < 0) throw invalid(`no <${name}> element`);
  const end = `</${name}>`;
  const close = xml.indexOf(end, open);
  if (close < 0) throw invalid(`<${name}> is not closed`);
  return xml.slice(open, close + end.length);
}

const truthy = (v: string | undefined) => v === 'true' || v === 'yes';
/** Eucalyptus's own marks of kernel and ramdisk images besides <image><type>. */
const KERNEL_ID = /^[ae]ki-[0-9a-f]{8,17}$/i;
const RAMDISK_ID = /^[ae]ri-[0-9a-f]{8,17}$/i;

export interface ParseOptions {
  /** The manifest's object name: Eucalyptus also takes `vmlinuz*` / `initrd*` names as kernel / ramdisk. */
  fileName?: string;
}

/** Parses a bundle manifest, checking its structure; the signature is checked separately (verifyManifestSignature). */
export function parseManifest(xml: string, opts: ParseOptions = {}): BundleManifest {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw invalid('DTDs are not allowed in a manifest');
  const doc = parse(xml);
  const root = doc['manifest'];
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw invalid('the document is not a <manifest>');
  const signature = text(root, 'signature');
  if (signature === undefined || signature === '' || signature === 'UNSIGNED') throw invalid('the manifest is not signed (no <signature>)');
  if (!/^[0-9a-fA-F]+$/.test(signature)) throw invalid('<signature> is not hex');

  const signedText = elementText(xml, 'machine_configuration') + elementText(xml, 'image');
  const signed = parse(`<manifest>${signedText}</manifest>`)['manifest'] as Node;
  const mc = child(signed, 'machine_configuration') ?? {};
  const image = child(signed, 'image');
  if (!image) throw invalid('no <image> element');

  const architecture = text(mc, 'architecture');
  if (!architecture) throw invalid('no <machine_configuration><architecture>');
  const kernel = text(mc, 'kernel_id');
  const ramdisk = text(mc, 'ramdisk_id');
  const declared = text(image, 'type');
  if (declared !== undefined && !IMAGE_TYPES.includes(declared as ImageType)) throw invalid(`<image><type> ${declared} is not machine, kernel or ramdisk`);
  const file = (opts.fileName ?? '').slice((opts.fileName ?? '').lastIndexOf('/') + 1);
  const imageType: ImageType = truthy(kernel) ? 'kernel'
    : truthy(ramdisk) ? 'ramdisk'
      : (declared as ImageType | undefined) ?? (file.startsWith('vmlinuz') ? 'kernel' : file.startsWith('initrd') ? 'ramdisk' : 'machine');

  const bdm = (Array.isArray(mc['block_device_mapping']) ? mc['block_device_mapping'] : []) as Node[];
  const blockDeviceMappings = bdm.flatMap((b) => (Array.isArray(b['mapping']) ? b['mapping'] : []) as Node[]).map((m) => {
    const virtual = text(m, 'virtual');
    const device = text(m, 'device');
    if (!virtual || !device) throw invalid('a <block_device_mapping><mapping> lacks <virtual> or <device>');
    return { virtual, device };
  });

  const partsNode = child(image, 'parts');
  const parts = ((partsNode?.['part'] ?? []) as Node[]).map((p): BundlePart => {
    const index = Number(p['@index']);
    const filename = text(p, 'filename');
    if (!Number.isInteger(index) || index < 0) throw invalid('a <part> has no valid index');
    if (!filename || filename.includes('/') || filename.includes('\\') || filename.startsWith('.')) throw invalid(`part ${index} has no valid <filename>`);
    return { index, filename, digest: hex(text(p, 'digest'), `the digest of part ${index}`) };
  });
  if (parts.length === 0) throw invalid('no <parts>');
  parts.sort((a, b) => a.index - b.index);
  if (parts.some((p, i) => p.index !== i)) throw invalid('part indexes are not 0..n-1');
  const count = partsNode?.['@count'];
  if (count !== undefined && Number(count) !== parts.length) throw invalid(`<parts count="${String(count)}"> but ${parts.length} parts are listed`);

  const algorithm = attr(image, 'digest', 'algorithm') ?? 'SHA1';
  if (algorithm.toUpperCase() !== 'SHA1') throw invalid(`image digest algorithm ${algorithm} is not supported (SHA1)`);
  const accountId = text(image, 'user');
  if (!accountId) throw invalid('no <image><user> (the bundling account)');
  const userKey = text(image, 'user_encrypted_key');
  const userIv = text(image, 'user_encrypted_iv');
  return {
    architecture,
    imageType,
    ...(imageType === 'machine' && kernel && KERNEL_ID.test(kernel) ? { kernelId: kernel } : {}),
    ...(imageType === 'machine' && ramdisk && RAMDISK_ID.test(ramdisk) ? { ramdiskId: ramdisk } : {}),
    blockDeviceMappings,
    imageName: text(image, 'name') ?? '',
    accountId: accountId.replace(/-/g, ''),
    imageDigest: hex(text(image, 'digest'), 'the image digest'),
    imageDigestAlgorithm: 'SHA1',
    ...(optionalInt(text(image, 'size'), '<size>') !== undefined ? { imageSize: optionalInt(text(image, 'size'), '<size>')! } : {}),
    ...(optionalInt(text(image, 'bundled_size'), '<bundled_size>') !== undefined ? { bundledSize: optionalInt(text(image, 'bundled_size'), '<bundled_size>')! } : {}),
    ec2EncryptedKey: hex(text(image, 'ec2_encrypted_key'), 'ec2_encrypted_key'),
    ec2EncryptedIv: hex(text(image, 'ec2_encrypted_iv'), 'ec2_encrypted_iv'),
    ...(userKey && /^[0-9a-fA-F]+$/.test(userKey) ? { userEncryptedKey: userKey.toLowerCase() } : {}),
    ...(userIv && /^[0-9a-fA-F]+$/.test(userIv) ? { userEncryptedIv: userIv.toLowerCase() } : {}),
    parts,
    signature: signature.toLowerCase(),
    signedText,
  };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** What a bundler knows when it writes a manifest (the encrypted key/IV hex included). */
export type ManifestFields = Omit<BundleManifest, 'signature' | 'signedText' | 'imageDigestAlgorithm'> & {
  bundler?: { name: string; version: string };
};

/** The manifest XML of a bundle, signed by `sign` (hex RSA-SHA1 of the text it is given), as euca2ools writes it. */
export function renderManifest(m: ManifestFields, sign: (signedText: string) => string): string {
  const el = (name: string, value: string | number, attrs = '') => `<${name}${attrs}>${esc(String(value))}</${name}>`;
  const mappings = m.blockDeviceMappings.length
    ? `<block_device_mapping>${m.blockDeviceMappings.map((b) => `<mapping>${el('virtual', b.virtual)}${el('device', b.device)}</mapping>`).join('')}</block_device_mapping>`
    : '';
  // Kernel and ramdisk images carry Eucalyptus's "true" marks besides <type>, as euca2ools writes them.
  const kernel = m.imageType === 'kernel' ? 'true' : m.kernelId;
  const ramdisk = m.imageType === 'ramdisk' ? 'true' : m.ramdiskId;
  const mc = `<machine_configuration>${el('architecture', m.architecture)}${mappings}${kernel ? el('kernel_id', kernel) : ''}${ramdisk ? el('ramdisk_id', ramdisk) : ''}</machine_configuration>`;
  const parts = m.parts.map((p) => `<part index="${p.index}">${el('filename', p.filename)}${el('digest', p.digest, ' algorithm="SHA1"')}</part>`).join('');
  const image = '<image>' +
    el('name', m.imageName) + el('user', m.accountId) + el('type', m.imageType) +
    el('digest', m.imageDigest, ' algorithm="SHA1"') +
    (m.imageSize !== undefined ? el('size', m.imageSize) : '') + (m.bundledSize !== undefined ? el('bundled_size', m.bundledSize) : '') +
    el('ec2_encrypted_key', m.ec2EncryptedKey, ' algorithm="AES-128-CBC"') +
    (m.userEncryptedKey ? el('user_encrypted_key', m.userEncryptedKey, ' algorithm="AES-128-CBC"') : '') +
    el('ec2_encrypted_iv', m.ec2EncryptedIv) +
    (m.userEncryptedIv ? el('user_encrypted_iv', m.userEncryptedIv) : '') +
    `<parts count="${m.parts.length}">${parts}</parts></image>`;
  const bundler = m.bundler ?? { name: 'mallee', version: '0.1.0' };
  const signedText = mc + image;
  return `<?xml version="1.0" encoding="UTF-8"?><manifest><version>2007-10-10</version><bundler>${el('name', bundler.name)}${el('version', bundler.version)}<release>0</release></bundler>${signedText}${el('signature', sign(signedText))}</manifest>`;
}
