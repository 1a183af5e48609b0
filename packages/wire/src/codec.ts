// Lossless XML encoding of typed values for wire bodies, SOAP-encoding style: an element per field,
// with t="n|b|l|s" marking numbers, booleans, lists (of <item>) and structs; text is a string.
import { XMLParser } from 'fast-xml-parser';

export type WireValue = string | number | boolean | null | undefined | WireValue[] | { [k: string]: WireValue };

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

// XML 1.0 cannot carry most control characters even escaped; strings holding them travel base64.
// eslint-disable-next-line no-control-regex
const XML_UNSAFE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|\r/;

export function encodeValue(name: string, value: WireValue): string {
  if (!NAME.test(name)) throw new TypeError(`wire: field name ${JSON.stringify(name)} is not an XML name`);
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') {
    if (XML_UNSAFE.test(value)) return `<${name} t="b64">${Buffer.from(value, 'utf8').toString('base64')}</${name}>`;
    return value === '' ? `<${name}/>` : `<${name}>${escapeXml(value)}</${name}>`;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`wire: ${name} is not a finite number`);
    return `<${name} t="n">${value}</${name}>`;
  }
  if (typeof value === 'boolean') return `<${name} t="b">${value}</${name}>`;
  if (Array.isArray(value)) return `<${name} t="l">${value.map((v) => encodeValue('item', v ?? null) || '<item t="null"/>').join('')}</${name}>`;
  if (typeof value === 'object') {
    return `<${name} t="s">${Object.entries(value).map(([k, v]) => encodeValue(k, v)).join('')}</${name}>`;
  }
  throw new TypeError(`wire: cannot encode ${typeof value} in ${name}`);
}

type OrderedNode = { [tag: string]: OrderedNode[] | string } & { ':@'?: Record<string, string> };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  htmlEntities: false,
});

export class WireDecodeError extends Error {}

export function parseXml(xml: string): OrderedNode[] {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new WireDecodeError('DTDs are not allowed');
  try {
    return parser.parse(xml) as OrderedNode[];
  } catch (e) {
    throw new WireDecodeError(`malformed XML: ${(e as Error).message}`);
  }
}

export function elementName(node: OrderedNode): string | undefined {
  return Object.keys(node).find((k) => k !== ':@');
}

export function children(node: OrderedNode): OrderedNode[] {
  const name = elementName(node);
  const c = name ? node[name] : undefined;
  return Array.isArray(c) ? (c as OrderedNode[]) : [];
}

function textOf(node: OrderedNode): string {
  return children(node).map((c) => (typeof c['#text'] === 'string' ? c['#text'] : typeof c['#text'] === 'number' ? String(c['#text']) : '')).join('');
}

export function decodeValue(node: OrderedNode): WireValue {
  const t = node[':@']?.t;
  const kids = children(node).filter((c) => elementName(c) !== '#text');
  switch (t) {
    case undefined: return textOf(node);
    case 'b64': return Buffer.from(textOf(node), 'base64').toString('utf8');
    case 'null': return null;
    case 'n': {
      const n = Number(textOf(node));
      if (!Number.isFinite(n)) throw new WireDecodeError(`not a number in ${elementName(node)}`);
      return n;
    }
    case 'b': return textOf(node).trim() === 'true';
    case 'l': return kids.map(decodeValue);
    case 's': {
      const out: Record<string, WireValue> = {};
      for (const k of kids) out[elementName(k)!] = decodeValue(k);
      return out;
    }
    default: throw new WireDecodeError(`unknown type ${t}`);
  }
}
