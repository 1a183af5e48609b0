// A client that polls one URL every INTERVAL ms until killed (run in the test's `internet` namespace):
// each poll is a new TCP connection (so every poll goes through the front end's DNAT rules, not an
// established flow's conntrack entry), with a 2 s timeout. Each result is one line appended to OUT:
//   <start ms since epoch> <1 if the answer was 200 and contained EXPECT, else 0> <duration ms>
//   node http-poller.mjs URL EXPECT OUT [INTERVAL]
import { appendFileSync } from 'node:fs';
import { request } from 'node:http';

const [url, expect, out, interval = '100'] = process.argv.slice(2);
const every = Number(interval);

function poll() {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok) => {
      if (!done) resolve(ok);
      done = true;
    };
    const req = request(url, { agent: false, timeout: 2000, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => finish(res.statusCode === 200 && body.includes(expect)));
      res.on('error', () => finish(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => finish(false));
    req.end();
  });
}

for (;;) {
  const started = Date.now();
  const ok = await poll();
  appendFileSync(out, `${started} ${ok ? 1 : 0} ${Date.now() - started}\n`);
  const wait = started + every - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
