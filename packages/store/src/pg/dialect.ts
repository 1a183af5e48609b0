// The daemons write SQLite SQL; this turns one statement into PostgreSQL's, so the same migrations and
// queries run on both. It is a tokenizer, not a parser: it rewrites the few SQLite-isms the code uses
// (placeholders, INSERT OR IGNORE/REPLACE, IFNULL, json_each, type names, camelCase aliases) and
// leaves everything else as written. SQL the daemons add that it does not know fails loudly on
// PostgreSQL (the scale-out suite runs every daemon's statements there).

type Token =
  | { kind: 'word'; text: string }
  | { kind: 'string' | 'quoted' | 'space' | 'comment' | 'punct' | 'number'; text: string }
  | { kind: 'param'; text: string; name?: string };

export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const start = i;
    if (c === "'" || c === '"' || c === '`') {
      i++;
      while (i < n) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) { i += 2; continue; }
          i++;
          break;
        }
        i++;
      }
      out.push({ kind: c === "'" ? 'string' : 'quoted', text: sql.slice(start, i) });
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
      out.push({ kind: 'comment', text: sql.slice(start, i) });
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      out.push({ kind: 'comment', text: sql.slice(start, i) });
    } else if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i]!)) i++;
      out.push({ kind: 'space', text: sql.slice(start, i) });
    } else if (c === '?') {
      i++;
      while (i < n && /[0-9]/.test(sql[i]!)) i++;
      out.push({ kind: 'param', text: sql.slice(start, i) });
    } else if ((c === '@' || c === ':' || c === '$') && /[A-Za-z_]/.test(sql[i + 1] ?? '') && !(c === ':' && sql[i - 1] === ':')) {
      i++;
      while (i < n && /[A-Za-z0-9_]/.test(sql[i]!)) i++;
      out.push({ kind: 'param', text: sql.slice(start, i), name: sql.slice(start + 1, i) });
    } else if (/[A-Za-z_]/.test(c)) {
      while (i < n && /[A-Za-z0-9_$]/.test(sql[i]!)) i++;
      out.push({ kind: 'word', text: sql.slice(start, i) });
    } else if (/[0-9]/.test(c)) {
      while (i < n && /[0-9.eE]/.test(sql[i]!)) i++;
      out.push({ kind: 'number', text: sql.slice(start, i) });
    } else {
      // Two-character operators stay whole so '::' is never read as a named parameter.
      const two = sql.slice(i, i + 2);
      i += ['::', '<>', '<=', '>=', '!=', '||', '=='].includes(two) ? 2 : 1;
      out.push({ kind: 'punct', text: sql.slice(start, i) });
    }
  }
  return out;
}

export interface Translated {
  text: string;
  /** How to build the positional values from the caller's arguments, in $n order. */
  params: ({ index: number } | { name: string })[];
}

export interface DialectCatalog {
  /** Primary-key columns of a table (for INSERT OR REPLACE). */
  primaryKey(table: string): string[];
}

const TYPE_MAP: Record<string, string> = { INTEGER: 'BIGINT', INT: 'BIGINT', REAL: 'DOUBLE PRECISION', BLOB: 'BYTEA', DOUBLE: 'DOUBLE PRECISION' };

const significant = (t: Token) => t.kind !== 'space' && t.kind !== 'comment';
const upper = (t: Token | undefined) => (t && t.kind === 'word' ? t.text.toUpperCase() : '');

/** Index of the next significant token at or after i (tokens.length when none). */
function next(tokens: Token[], i: number): number {
  while (i < tokens.length && !significant(tokens[i]!)) i++;
  return i;
}

export function translate(sql: string, catalog?: DialectCatalog): Translated {
  const tokens = tokenize(sql);
  const params: Translated['params'] = [];
  const named = new Map<string, number>();
  let positional = 0;
  let onConflict: ((tail: string) => string) | undefined;
  const first = upper(tokens[next(tokens, 0)]);
  const ddl = first === 'CREATE' || first === 'ALTER';
  const out: string[] = [];

  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === 'param') {
      if (t.name !== undefined) {
        let n = named.get(t.name);
        if (n === undefined) {
          params.push({ name: t.name });
          n = params.length;
          named.set(t.name, n);
        }
        out.push(`$${n}`);
      } else {
        const explicit = t.text.length > 1 ? Number(t.text.slice(1)) - 1 : positional++;
        params.push({ index: explicit });
        out.push(`$${params.length}`);
      }
      continue;
    }
    if (t.kind === 'quoted' && t.text.startsWith('`')) {
      out.push(`"${t.text.slice(1, -1).replace(/"/g, '""')}"`);
      continue;
    }
    if (t.kind !== 'word') {
      out.push(t.text);
      continue;
    }
    const word = t.text.toUpperCase();
    // INSERT OR IGNORE / OR REPLACE INTO table (cols) …: PostgreSQL's ON CONFLICT at the end.
    if (word === 'INSERT') {
      const j = next(tokens, i + 1);
      if (upper(tokens[j]) === 'OR') {
        const k = next(tokens, j + 1);
        const how = upper(tokens[k]);
        const into = next(tokens, k + 1);
        const table = next(tokens, into + 1);
        const tableName = tokens[table]?.text.replace(/"/g, '') ?? '';
        if (how === 'IGNORE') onConflict = () => ' ON CONFLICT DO NOTHING';
        else if (how === 'REPLACE') {
          const columns = insertColumns(tokens, table + 1);
          const pk = catalog?.primaryKey(tableName) ?? [];
          if (pk.length === 0) throw new Error(`INSERT OR REPLACE INTO ${tableName}: no primary key known for the ON CONFLICT target`);
          const rest = columns.filter((c) => !pk.includes(c));
          onConflict = () => rest.length === 0 ? ` ON CONFLICT (${pk.join(', ')}) DO NOTHING`
            : ` ON CONFLICT (${pk.join(', ')}) DO UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`;
        } else throw new Error(`INSERT OR ${how} is not supported on PostgreSQL`);
        out.push('INSERT');
        i = k; // drop "OR <how>"
        continue;
      }
    }
    if (word === 'IFNULL') { out.push('COALESCE'); continue; }
    // SQLite's null-safe `a IS ?` / `a IS NOT ?` are PostgreSQL's IS [NOT] DISTINCT FROM.
    if (word === 'IS') {
      const j = next(tokens, i + 1);
      if (tokens[j]?.kind === 'param') { out.push('IS NOT DISTINCT FROM'); continue; }
      if (upper(tokens[j]) === 'NOT' && tokens[next(tokens, j + 1)]?.kind === 'param') {
        out.push('IS DISTINCT FROM');
        i = j;
        continue;
      }
    }
    if (word === 'JSON_EACH') {
      // json_each(x) → the elements of a JSON array as text, in a column named value.
      const open = next(tokens, i + 1);
      const arg = next(tokens, open + 1);
      const close = next(tokens, arg + 1);
      if (tokens[open]?.text === '(' && tokens[arg]?.kind === 'param' && tokens[close]?.text === ')') {
        out.push('json_array_elements_text(CAST(');
        i = arg - 1;
        tokens[close] = { kind: 'punct', text: ' AS json)) AS json_each(value)' };
        continue;
      }
      throw new Error('json_each(…) is supported on PostgreSQL only with one bound parameter');
    }
    if (ddl && word === 'AUTOINCREMENT') continue; // INTEGER PRIMARY KEY AUTOINCREMENT: see below
    if (ddl && word === 'INTEGER') {
      // A column INTEGER PRIMARY KEY is SQLite's rowid, numbered when not given, with or without AUTOINCREMENT.
      const j = next(tokens, i + 1);
      const k = next(tokens, j + 1);
      if (upper(tokens[j]) === 'PRIMARY' && upper(tokens[k]) === 'KEY' && isTypePosition(tokens, i)) {
        out.push('BIGINT GENERATED BY DEFAULT AS IDENTITY');
        continue;
      }
    }
    if (TYPE_MAP[word] !== undefined && (ddl ? isTypePosition(tokens, i) : upper(tokens[prevSignificant(tokens, i)]) === 'AS')) {
      out.push(TYPE_MAP[word]);
      continue;
    }
    // Byte-wise ordering of text, as SQLite's BINARY collation (S3 listings depend on it).
    if (ddl && word === 'TEXT' && isTypePosition(tokens, i)) {
      out.push('TEXT COLLATE "C"');
      continue;
    }
    // camelCase aliases keep their case (PostgreSQL folds unquoted names to lower case).
    if (/[A-Z]/.test(t.text) && /[a-z]/.test(t.text) && upper(tokens[prevSignificant(tokens, i)]) === 'AS') {
      out.push(`"${t.text}"`);
      continue;
    }
    out.push(t.text);
  }
  let text = out.join('');
  if (onConflict) {
    // Before a trailing RETURNING clause, else at the end (a trailing ';' stays last).
    const m = /\s+RETURNING\b[\s\S]*$/i.exec(text);
    if (m) text = text.slice(0, m.index) + onConflict('') + text.slice(m.index);
    else text = text.replace(/\s*;?\s*$/, '') + onConflict('');
  }
  return { text, params };
}

// Words after which a name, not a type, follows (a column called blob or text stays a name).
const NOT_BEFORE_TYPE = new Set(['WHERE', 'AND', 'OR', 'NOT', 'ON', 'BY', 'SELECT', 'SET', 'WHEN', 'THEN', 'ELSE', 'IN', 'IS', 'TABLE', 'INDEX', 'COLUMN', 'EXISTS', 'REFERENCES', 'UNIQUE', 'CHECK', 'DEFAULT', 'COLLATE']);

/** In DDL, a type name follows a column name: CREATE TABLE t (size INTEGER …), ADD COLUMN size INTEGER, CAST(x AS INTEGER). */
function isTypePosition(tokens: Token[], i: number): boolean {
  const prev = tokens[prevSignificant(tokens, i)];
  if (!prev) return false;
  if (upper(prev) === 'AS') return true;
  return (prev.kind === 'word' || prev.kind === 'quoted') && !NOT_BEFORE_TYPE.has(upper(prev));
}

function prevSignificant(tokens: Token[], i: number): number {
  let j = i - 1;
  while (j >= 0 && !significant(tokens[j]!)) j--;
  return j;
}

/** The column list of INSERT INTO t (a, b, …), starting after the table name. */
function insertColumns(tokens: Token[], from: number): string[] {
  let i = next(tokens, from);
  if (tokens[i]?.text !== '(') return [];
  const cols: string[] = [];
  for (i++; i < tokens.length && tokens[i]!.text !== ')'; i++) {
    const t = tokens[i]!;
    if (t.kind === 'word' || t.kind === 'quoted') cols.push(t.text.replace(/"/g, ''));
  }
  return cols;
}

/** Splits a script (migrations) into statements at top-level semicolons. */
export function splitStatements(sql: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (const t of tokenize(sql)) {
    if (t.kind === 'punct' && t.text === ';') {
      if (cur.trim()) parts.push(cur);
      cur = '';
    } else cur += t.text;
  }
  if (cur.replace(/--[^\n]*/g, '').trim()) parts.push(cur);
  return parts;
}
