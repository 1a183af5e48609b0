// Lossless XML encoding of typed values for wire bodies, SOAP-encoding style: an element per field,
// with t="n|b|l|s" marking numbers, booleans, lists (of <item>) and structs; text is a string.
import { Parser } from 'htmlparser2';

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

export class WireDecodeError extends Error {}

/** A decoded document: the element path to each top-level value is known only to decodeDocument's caller. */
interface Frame {
  name: string;
  t: string | undefined;
  text: string;
  list?: WireValue[];
  struct?: Record<string, WireValue>;
  /** Untyped containers (Envelope, Header, Body) keep their typed children by name, in order. */
  kids?: { name: string; value: WireValue }[];
}

function finish(f: Frame): WireValue {
  switch (f.t) {
    case undefined: return f.text;
    case 'b64': return Buffer.from(f.text, 'base64').toString('utf8');
    case 'null': return null;
    case 'n': {
      const n = f.text.trim() === '' ? NaN : Number(f.text);
      if (!Number.isFinite(n)) throw new WireDecodeError(`not a number in ${f.name}`);
      return n;
    }
    case 'b': return f.text.trim() === 'true';
    case 'l': return f.list!;
    case 's': return f.struct!;
    default: throw new WireDecodeError(`unknown type ${f.t}`);
  }
}

export interface DecodedElement {
  name: string;
  value: WireValue;
  /** Untyped child elements (for envelope containers), with their own children. */
  children: DecodedElement[];
}

/**
 * Decode an XML document of encodeValue-encoded elements in one streaming pass (htmlparser2's
 * tokenizer; a tree-building parser cost ~0.7 s for a 10,000-instance reply). Untyped elements
 * that hold elements (Envelope, Body) come back as containers with children.
 */
export function decodeDocument(xml: string): DecodedElement[] {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new WireDecodeError('DTDs are not allowed');
  const roots: DecodedElement[] = [];
  const stack: { frame: Frame; el: DecodedElement }[] = [];
  let error: string | undefined;
  const parser: Parser = new Parser(
    {
      onopentag(name, attrs) {
        if (error) return;
        const t = attrs.t;
        const frame: Frame = { name, t, text: '' };
        if (t === 'l') frame.list = [];
        else if (t === 's') frame.struct = Object.create(null) as Record<string, WireValue>;
        stack.push({ frame, el: { name, value: undefined, children: [] } });
      },
      ontext(text) {
        if (stack.length) stack[stack.length - 1]!.frame.text += text;
      },
      onclosetag(name, isImplied) {
        if (error) return;
        // htmlparser2 reports `<x/>` as an implied close too; only a token ending in "/>" is legitimate.
        if (isImplied && !xml.slice(parser.startIndex, parser.endIndex + 1).endsWith('/>')) { error = `unclosed or mismatched element ${name}`; return; }
        const top = stack.pop();
        if (!top || top.frame.name !== name) { error = `mismatched closing tag ${name}`; return; }
        try {
          top.el.value = top.el.children.length && top.frame.t === undefined ? undefined : finish(top.frame);
        } catch (e) { error = (e as Error).message; return; }
        const parent = stack[stack.length - 1];
        if (!parent) { roots.push(top.el); return; }
        const pf = parent.frame;
        if (pf.t === 'l') {
          if (name !== 'item') { error = `list ${pf.name} holds <${name}>, expected <item>`; return; }
          pf.list!.push(top.el.value);
        } else if (pf.t === 's') {
          // Object.create(null) above: a field named __proto__ is just a field.
          pf.struct![name] = top.el.value;
        } else if (pf.t === undefined) {
          parent.el.children.push(top.el);
        } else {
          error = `<${pf.name} t="${pf.t}"> cannot hold elements`;
        }
      },
      onerror(e) { error = e.message; },
    },
    { xmlMode: true, decodeEntities: true, recognizeSelfClosing: true },
  );
  parser.write(xml);
  parser.end();
  if (!error && stack.length) error = 'document ends inside an element';
  if (error) throw new WireDecodeError(`malformed XML: ${error}`);
  return roots;
}
