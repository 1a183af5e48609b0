// A tiny control server for test guests (run in the test's `internet` namespace): a guest's user-data
// script polls GET /task/<instance-id> and POSTs each task's output to /result/<instance-id>/<n>.
// Tasks and results are files under DIR, so the test (in another network namespace) needs no socket.
//   node guest-control.mjs DIR HOST PORT
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, host, port] = process.argv.slice(2);
const safe = (s) => /^[A-Za-z0-9-]+$/.test(s);

createServer((req, res) => {
  const [, kind, id, n] = (req.url ?? '').split('/');
  if (req.method === 'GET' && kind === 'task' && safe(id)) {
    const tasks = join(dir, id, 'tasks');
    const next = existsSync(tasks) ? readdirSync(tasks).filter((f) => /^\d+$/.test(f)).map(Number).sort((a, b) => a - b)
      .find((t) => !existsSync(join(dir, id, 'results', String(t)))) : undefined;
    mkdirSync(join(dir, id), { recursive: true });
    writeFileSync(join(dir, id, 'seen'), new Date().toISOString());
    res.end(next === undefined ? '' : `# task ${next}\n${readFileSync(join(tasks, String(next)), 'utf8')}`);
    return;
  }
  if (req.method === 'POST' && kind === 'result' && safe(id) && /^\d+$/.test(n ?? '')) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      mkdirSync(join(dir, id, 'results'), { recursive: true });
      const file = join(dir, id, 'results', n);
      writeFileSync(`${file}.tmp`, Buffer.concat(chunks));
      renameSync(`${file}.tmp`, file);
      res.end('ok');
    });
    return;
  }
  res.statusCode = 404;
  res.end();
}).listen(Number(port), host);
