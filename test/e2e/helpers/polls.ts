// Reading what helpers/http-poller.mjs wrote: one line per poll, `<start ms> <1|0> <duration ms>`.
import { existsSync, readFileSync } from 'node:fs';

export interface Poll { at: number; ok: boolean }

export function readPolls(file: string): Poll[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [at, ok] = l.split(' ');
    return { at: Number(at), ok: ok === '1' };
  });
}

/** Longest time between two answered polls that overlaps [from, to], and the unanswered polls started in it. */
export function gapIn(file: string, from: number, to: number): { longestGapMs: number; failedPolls: number; polls: number } {
  const all = readPolls(file);
  const ok = all.filter((p) => p.ok).map((p) => p.at);
  let longest = 0;
  for (let i = 1; i < ok.length; i++) if (ok[i]! >= from && ok[i - 1]! <= to) longest = Math.max(longest, ok[i]! - ok[i - 1]!);
  const inWindow = all.filter((p) => p.at >= from && p.at <= to);
  return { longestGapMs: longest, failedPolls: inWindow.filter((p) => !p.ok).length, polls: inWindow.length };
}
