// Structure-aware EC2 Query parameters: the botocore service model on this machine (the reference for
// every EC2 shape) says which parameters each action takes and of what type; the arbitraries here build
// requests from it, as the EC2 protocol serializes them (`Filter.2.Value.1`), with hostile values.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';

interface ShapeRef { shape: string; locationName?: string; queryName?: string }
interface Shape {
  type: string;
  members?: Record<string, ShapeRef>;
  member?: ShapeRef;
  enum?: string[];
  required?: string[];
}
interface Model { operations: Record<string, { input?: { shape: string } }>; shapes: Record<string, Shape> }

let model: Model | undefined | null;

/** The EC2 2016-11-15 model, or undefined when botocore is not installed (then a small vocabulary is used). */
export function ec2Model(): Model | undefined {
  if (model !== undefined) return model ?? undefined;
  try {
    const dir = execFileSync('python3', ['-c', 'import botocore,os;print(os.path.dirname(botocore.__file__))'], { encoding: 'utf8' }).trim();
    const file = join(dir, 'data/ec2/2016-11-15/service-2.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      text = gunzipSync(readFileSync(file + '.gz')).toString('utf8');
    }
    model = JSON.parse(text) as Model;
  } catch {
    model = null;
  }
  return model ?? undefined;
}

export type Pair = [string, string];

/** Values that break parsers: numbers at and past every limit, dates, ids of every kind, markup, encodings. */
const nasty = fc.constantFrom(
  '', ' ', '0', '-1', '1e309', 'NaN', 'Infinity', '99999999999999999999999', '2147483648', '-0', '0x10', '1.5', 'true', 'false', 'TRUE', 'null',
  'i-', 'i-00000000', 'i-zzzzzzzz', 'ami-12345678', 'emi-00000000', 'sg-', 'sg-00000000', 'vol-12345678', 'snap-1', 'eipalloc-1', 'r-1',
  '2016-11-15', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z', 'not-a-date', '0.0.0.0/0', '10.0.0.0/33', '::/0', '256.1.1.1',
  '<x/>', ']]>', '&amp;', '"', "'", '\\', '%', '%%', '+', '&', '=', '.', '..', '../../etc/passwd', '\u0000', '\uffff', '\ud800', '💥',
  'a'.repeat(256), 'a'.repeat(70_000), 'verbose', '*', '?', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
);

const anyString = fc.oneof({ weight: 3, arbitrary: nasty }, { weight: 2, arbitrary: fc.string({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) });

function leaf(shape: Shape): fc.Arbitrary<string> {
  switch (shape.type) {
    case 'integer':
    case 'long':
      return fc.oneof(fc.integer({ min: -5, max: 1100 }).map(String), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String), nasty);
    case 'boolean':
      return fc.oneof(fc.constantFrom('true', 'false'), nasty);
    case 'double':
    case 'float':
      return fc.oneof(fc.double().map(String), nasty);
    case 'timestamp':
      return fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), nasty);
    case 'blob':
      return fc.oneof(fc.base64String({ maxLength: 64 }), nasty);
    default:
      return shape.enum ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...shape.enum) }, { weight: 1, arbitrary: anyString }) : anyString;
  }
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const queryName = (name: string, ref: ShapeRef) => ref.queryName ?? capitalize(ref.locationName ?? name);

/** Index strings for list members: mostly 1..3, sometimes what no client sends. */
const listIndex = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 3 }).map(String) }, { weight: 1, arbitrary: fc.constantFrom('0', '-1', '01', '1000000', '9007199254740993', 'x', '') });

function pairsOf(m: Model, prefix: string, shapeName: string, depth: number): fc.Arbitrary<Pair[]> {
  const shape = m.shapes[shapeName];
  if (!shape) return fc.constant([]);
  if (shape.type === 'structure') {
    const members = Object.entries(shape.members ?? {});
    if (members.length === 0 || depth > 4) return fc.constant([]);
    return fc
      .subarray(members, { minLength: 0, maxLength: Math.min(members.length, 6) })
      .chain((chosen) => (chosen.length === 0 ? fc.constant([] as Pair[][]) : fc.tuple(...chosen.map(([n, ref]) => pairsOf(m, prefix === '' ? queryName(n, ref) : `${prefix}.${queryName(n, ref)}`, ref.shape, depth + 1)))))
      .map((parts) => parts.flat());
  }
  if (shape.type === 'list') {
    if (depth > 4 || !shape.member) return fc.constant([]);
    const member = shape.member;
    return fc.array(listIndex, { maxLength: 3 }).chain((idx) => (idx.length === 0 ? fc.constant([] as Pair[][]) : fc.tuple(...idx.map((i) => pairsOf(m, `${prefix}.${i}`, member.shape, depth + 1))))).map((parts) => parts.flat());
  }
  if (shape.type === 'map') return fc.constant([]);
  return leaf(shape).map((v) => [[prefix, v] as Pair]);
}

/** Actions the clc serves today, and the ones the other areas are adding (InvalidAction until they land). */
export const EC2_ACTIONS = [
  'DescribeInstances', 'RunInstances', 'TerminateInstances', 'RebootInstances', 'StopInstances', 'StartInstances', 'GetConsoleOutput',
  'DescribeInstanceStatus', 'DescribeInstanceAttribute', 'DescribeInstanceTypes', 'DescribeAvailabilityZones', 'DescribeRegions',
  'DescribeAccountAttributes', 'CreateKeyPair', 'ImportKeyPair', 'DeleteKeyPair', 'DescribeKeyPairs', 'CreateSecurityGroup',
  'DeleteSecurityGroup', 'DescribeSecurityGroups', 'AuthorizeSecurityGroupIngress', 'RevokeSecurityGroupIngress', 'RegisterImage',
  'DeregisterImage', 'DescribeImages', 'DescribeImageAttribute', 'ModifyImageAttribute', 'ResetImageAttribute', 'CreateTags',
  'DeleteTags', 'DescribeTags',
  // sc and net (issue 5, 6)
  'CreateVolume', 'DeleteVolume', 'DescribeVolumes', 'AttachVolume', 'DetachVolume', 'CreateSnapshot', 'DeleteSnapshot', 'DescribeSnapshots',
  'AllocateAddress', 'ReleaseAddress', 'AssociateAddress', 'DisassociateAddress', 'DescribeAddresses',
] as const;

/** Pairs of one request: Action, Version and parameters drawn from the action's input shape, sometimes with junk added. */
export function ec2Request(): fc.Arbitrary<Pair[]> {
  const m = ec2Model();
  const action = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...EC2_ACTIONS) }, { weight: 1, arbitrary: anyString });
  const version = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('2016-11-15', '2015-10-01', '2009-11-30') }, { weight: 1, arbitrary: anyString });
  const junk = fc.array(fc.tuple(fc.oneof(fc.constantFrom('A.1', 'A..B', '.A', 'A.', 'Filter.1', 'InstanceId', 'InstanceId.1.x', 'X-Amz-Foo', 'Action.1', 'Version.1', 'a.'.repeat(20) + 'b'), fc.string({ maxLength: 12 })), anyString), { maxLength: 3 });
  return fc.tuple(action, version, junk).chain(([a, v, extra]) => {
    const input = m?.operations[a]?.input?.shape;
    const params = m && input ? pairsOf(m, '', input, 0) : fc.array(fc.tuple(fc.constantFrom('InstanceId.1', 'Filter.1.Name', 'Filter.1.Value.1', 'MaxResults', 'ImageId', 'KeyName', 'GroupName'), anyString), { maxLength: 5 });
    return params.map((p) => [['Action', a] as Pair, ['Version', v] as Pair, ...p, ...extra]);
  });
}

const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Form-encodes pairs; lone surrogates (not UTF-8 encodable) go raw as `%ED%A0%80` so the server sees invalid UTF-8. */
export function formEncode(pairs: readonly Pair[]): string {
  const e = (s: string) => {
    try {
      return enc(s);
    } catch {
      return [...s].map((ch) => (/[\ud800-\udfff]/.test(ch) ? '%ED%A0%80' : enc(ch))).join('');
    }
  };
  return pairs.map(([k, v]) => `${e(k)}=${e(v)}`).join('&');
}

/** Byte-level damage to an encoded query: truncation, stray `%`, doubled separators, raw bytes. */
export function damage(encoded: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(encoded) },
    { weight: 1, arbitrary: fc.nat({ max: Math.max(0, encoded.length) }).map((n) => encoded.slice(0, n)) },
    { weight: 1, arbitrary: fc.tuple(fc.nat({ max: encoded.length }), fc.constantFrom('%', '%Z', '%C0%AF', '%FF', '&&', '==', '&=&', '%00', '+', ';', '#')).map(([i, s]) => encoded.slice(0, i) + s + encoded.slice(i)) },
  );
}
