// Listing output: `--output table` (aligned columns, the default) or `--output json`.
export type OutputFormat = 'table' | 'json';

export function parseOutput(v: string): OutputFormat {
  if (v !== 'table' && v !== 'json') throw new Error(`--output must be json or table, not ${v}`);
  return v;
}

export function renderRows(rows: Record<string, unknown>[], columns: string[], format: OutputFormat): string {
  if (format === 'json') return JSON.stringify(rows, null, 2);
  const cells = rows.map((r) => columns.map((c) => (r[c] === undefined || r[c] === null ? '-' : String(r[c]))));
  const header = columns.map((c) => c.toUpperCase());
  const widths = columns.map((_, i) => Math.max(header[i]!.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((v, i) => (i === row.length - 1 ? v : v.padEnd(widths[i]!))).join('  ');
  return [line(header), ...cells.map(line)].join('\n');
}
