// Preloaded into each daemon by the benchmarks when MALLEE_BENCH_PROFILE=DIR (NODE_OPTIONS=--import …;
// node 20 refuses --cpu-prof there): a V8 CPU profile of the whole run, written as
// DIR/<pid>.cpuprofile when the daemon exits (open it in Chrome DevTools or speedscope).
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.MALLEE_BENCH_PROFILE;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // Same-thread inspector sessions answer synchronously, so this still runs inside 'exit'.
    session.post('Profiler.stop', (err, { profile }) => {
      if (!err) writeFileSync(join(dir, `${process.argv[1]?.split('/').slice(-4, -2).join('-') ?? 'node'}-${process.pid}.cpuprofile`), JSON.stringify(profile));
    });
  });
}
