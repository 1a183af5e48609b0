// S3 XML documents: results as plain objects serialised the S3 way (arrays repeat their element, no
// <item> wrappers; Dates as ISO-8601 with milliseconds), and request bodies parsed into plain objects.
import { XMLParser } from 'fast-xml-parser';
import { escapeXml, XML_DECLARATION } from '../xml.js';
import { s3Errors } from './errors.js';

export const S3_NAMESPACE = 'http://s3.amazonaws.com/doc/2006-03-01/';
export const XSI_NAMESPACE = 'http://www.w3.org/2001/XMLSchema-instance';

/** An element value: text, number, boolean, Date, nested element, or a repeated element (array). */
export type S3XmlValue = string | number | boolean | Date | undefined | null | S3XmlObject | S3XmlValue[];
export interface S3XmlObject {
  [element: string]: S3XmlValue;
  /** Attributes of this element (e.g. `xsi:type` on a Grantee). */
  $attrs?: Record<string, string>;
  /** Children whose names interleave (ListVersionsResult's Version and DeleteMarker), in order, at this position. */
  $seq?: [string, S3XmlValue][];
}

function element(name: string, value: S3XmlValue): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map((v) => element(name, v)).join('');
  if (value instanceof Date) return `<${name}>${value.toISOString()}</${name}>`;
  if (typeof value === 'object') {
    const { $attrs, ...children } = value;
    const attrs = $attrs ? Object.entries($attrs).map(([k, v]) => ` ${k}="${escapeXml(v)}"`).join('') : '';
    return `<${name}${attrs}>${body(children)}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

function body(obj: S3XmlObject): string {
  let out = '';
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$seq') for (const [name, child] of v as [string, S3XmlValue][]) out += element(name, child);
    else out += element(k, v as S3XmlValue);
  }
  return out;
}

/** `<?xml…?><Root xmlns="http://s3.amazonaws.com/doc/2006-03-01/">…</Root>`. */
export function s3Xml(root: string, result: S3XmlObject): string {
  const { $attrs, ...children } = result;
  return XML_DECLARATION + '\n' + element(root, { ...children, $attrs: { xmlns: S3_NAMESPACE, ...$attrs } });
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  isArray: (name) => ['Part', 'Object', 'Grant'].includes(name),
});

/** Parses a request body; MalformedXML when it is not XML or its root is not `root`. */
export function parseS3Xml(xml: string, root: string): Record<string, unknown> {
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml, true) as Record<string, unknown>;
  } catch {
    throw s3Errors.malformedXml();
  }
  const top = doc[root];
  if (top === undefined) throw s3Errors.malformedXml();
  if (top === '') return {};
  if (typeof top !== 'object' || top === null) throw s3Errors.malformedXml();
  return top as Record<string, unknown>;
}

/** A text child of a parsed element, or undefined. */
export function xmlText(node: unknown, name: string): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const v = (node as Record<string, unknown>)[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object') {
    const t = (v as Record<string, unknown>)['#text'];
    return t === undefined ? '' : String(t);
  }
  return String(v);
}

/** Children of a parsed element that may repeat, always as an array. */
export function xmlList(node: unknown, name: string): unknown[] {
  if (typeof node !== 'object' || node === null) return [];
  const v = (node as Record<string, unknown>)[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

