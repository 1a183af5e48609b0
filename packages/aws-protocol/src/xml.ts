// EC2 response XML: handler results (plain objects) as `<{Action}Response>` documents in the request's
// API-version namespace, and the `<Response><Errors>` envelope every EC2 error uses.
import { Ec2Error } from './errors.js';

export const OLDEST_API_VERSION = '2009-11-30';
export const NEWEST_API_VERSION = '2016-11-15';
export const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

export const ec2Namespace = (version: string) => `http://ec2.amazonaws.com/doc/${version}/`;

/**
 * The API version a request asked for: absent means the newest; a date outside the supported range
 * gets the error EC2 itself returns for an unknown version.
 */
export function resolveApiVersion(version: string | undefined): string {
  if (version === undefined || version === '') return NEWEST_API_VERSION;
  const ok = /^\d{4}-\d{2}-\d{2}$/.test(version) && !Number.isNaN(Date.parse(version + 'T00:00:00Z')) && version >= OLDEST_API_VERSION && version <= NEWEST_API_VERSION;
  if (!ok) throw new Ec2Error('NoSuchVersion', `The requested version (${version.slice(0, 40)}) of service AmazonEC2 does not exist`);
  return version;
}

// XML 1.0 cannot carry most control characters or lone surrogates, even as references.
// eslint-disable-next-line no-control-regex
const INVALID_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[&<>"'\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/;

export function escapeXml(s: string): string {
  // Most values (ids, states, names) need nothing; DescribeInstances serialises hundreds of thousands.
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s
    .replace(INVALID_XML_CHARS, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const checkedNames = new Set<string>();

function checkName(name: string): void {
  if (checkedNames.has(name)) return;
  if (!XML_NAME.test(name)) throw new Error(`Invalid XML element name in EC2 result: ${JSON.stringify(name)}`);
  if (checkedNames.size < 10_000) checkedNames.add(name);
}

function scalar(value: unknown): string | undefined {
  if (typeof value === 'string') return escapeXml(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new Error('Invalid Date in EC2 result');
    return value.toISOString();
  }
  return undefined;
}

interface Out { s: string }

function element(name: string, value: unknown, out: Out, depth: number): void {
  if (value === undefined || value === null) return;
  checkName(name);
  if (depth > 64) throw new Error('EC2 result nested too deeply (cycle?)');
  const text = scalar(value);
  if (text !== undefined) {
    out.s += `<${name}>${text}</${name}>`;
    return;
  }
  out.s += `<${name}>`;
  if (Array.isArray(value)) {
    for (const item of value) {
      // A missing item still occupies a place in the list, so keep it as an empty <item/>.
      if (item === undefined || item === null) out.s += '<item/>';
      else element('item', item, out, depth + 1);
    }
  } else if (typeof value === 'object') {
    children(value as Record<string, unknown>, out, depth + 1);
  } else {
    throw new Error(`Unsupported value of type ${typeof value} for element ${name} in EC2 result`);
  }
  out.s += `</${name}>`;
}

function children(obj: Record<string, unknown>, out: Out, depth: number): void {
  for (const k in obj) {
    if (Object.hasOwn(obj, k)) element(k, obj[k], out, depth);
  }
}

/** Serialises a handler's result as `<{action}Response xmlns=…><requestId>…</requestId>…`. */
export function ec2ResponseXml(action: string, apiVersion: string, requestId: string, result: Record<string, unknown>): string {
  if (!XML_NAME.test(action)) throw new Error(`Invalid action name ${JSON.stringify(action)}`);
  const out: Out = { s: `${XML_DECLARATION}<${action}Response xmlns="${escapeXml(ec2Namespace(apiVersion))}"><requestId>${escapeXml(requestId)}</requestId>` };
  children(result, out, 0);
  return out.s + `</${action}Response>`;
}

/** The EC2 error envelope. */
export function ec2ErrorXml(code: string, message: string, requestId: string): string {
  return (
    XML_DECLARATION +
    `<Response><Errors><Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message></Error></Errors>` +
    `<RequestID>${escapeXml(requestId)}</RequestID></Response>`
  );
}
