// A recording HTTP proxy for wire links: put it between two real daemons (register the component
// at the proxy's URL) and it forwards every request unchanged, keeping a copy, so a test can replay
// a genuine signed message at the receiver.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

export interface RecordedRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The receiver's answer (undefined while in flight). */
  status?: number;
}

export class WireRecorder {
  readonly recorded: RecordedRequest[] = [];
  private server: Server | undefined;
  url = '';

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const headers = forwardable(req.headers);
        const rec: RecordedRequest = { path: req.url ?? '/', headers, body };
        this.recorded.push(rec);
        fetch(new URL(req.url ?? '/', this.target), { method: req.method ?? 'POST', headers, ...(req.method === 'GET' ? {} : { body }) })
          .then(async (up) => {
            const text = await up.text();
            rec.status = up.status;
            res.writeHead(up.status, Object.fromEntries([...up.headers].filter(([k]) => k.startsWith('x-mallee-') || k === 'content-type')));
            res.end(text);
          })
          .catch(() => {
            res.writeHead(502);
            res.end();
          });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${addr.port}`;
    return this.url;
  }

  /** Send a recorded request straight to the target again, exactly as it was (or changed by `edit`). */
  async replay(r: RecordedRequest, edit: (r: RecordedRequest) => RecordedRequest = (x) => x): Promise<{ status: number; body: string }> {
    const e = edit(r);
    const res = await fetch(new URL(e.path, this.target), { method: 'POST', headers: e.headers, body: e.body });
    return { status: res.status, body: await res.text() };
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function forwardable(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (typeof v === 'string' && (k.startsWith('x-mallee-') || k === 'content-type')) out[k] = v;
  return out;
}
