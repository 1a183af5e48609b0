// The console's small set of building blocks: data loading and polling hooks, error notes that tell
// "not available on this cloud" from a failure, accessible tables, dialogs and form fields.
import type { ComponentChildren, TargetedSubmitEvent } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/ec2.js';

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => Promise<void>;
}

/** Runs load() now, again on reload(), and every pollMs while the tab is visible. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], pollMs?: number): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      const v = await load();
      if (mine === seq.current) {
        setData(v);
        setError(undefined);
      }
    } catch (err) {
      if (mine === seq.current) setError(err);
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    void reload();
    if (!pollMs) return;
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') void reload();
    }, pollMs);
    return () => clearInterval(t);
  }, [reload, pollMs]);
  return { data, error, loading, reload };
}

export function ErrorNote({ error, what }: { error: unknown; what?: string }) {
  if (!error) return null;
  if (error instanceof ApiError && error.notAvailable)
    return (
      <p class="note unavailable" role="status">
        {what ?? 'This feature'} is not available on this cloud (the API answers {error.code}: {error.message}).
      </p>
    );
  const text = error instanceof ApiError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
  return (
    <p class="note error" role="alert">
      {text}
    </p>
  );
}

export interface Column<T> {
  label: string;
  cell: (row: T) => ComponentChildren;
}

export function Table<T>({ caption, columns, rows, rowKey, empty, selected, onSelect }: {
  caption: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  empty: string;
  selected?: string;
  onSelect?: (key: string) => void;
}) {
  return (
    <table>
      <caption>{caption}</caption>
      <thead>
        <tr>
          {onSelect && <th scope="col"><span class="sr-only">select</span></th>}
          {columns.map((c) => (
            <th scope="col" key={c.label}>{c.label}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 ? (
          <tr>
            <td colSpan={columns.length + (onSelect ? 1 : 0)} class="empty">{empty}</td>
          </tr>
        ) : (
          rows.map((r) => {
            const k = rowKey(r);
            return (
              <tr key={k} class={selected === k ? 'selected' : undefined} data-key={k}>
                {onSelect && (
                  <td>
                    <input type="radio" name={`${caption}-select`} aria-label={`select ${k}`} checked={selected === k} onChange={() => onSelect(k)} />
                  </td>
                )}
                {columns.map((c) => (
                  <td key={c.label}>{c.cell(r)}</td>
                ))}
              </tr>
            );
          })
        )}
      </tbody>
    </table>
  );
}

/** A modal dialog (native <dialog>: focus stays inside, Escape closes it). */
export function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog ref={ref} aria-labelledby="dialog-title" onClose={onClose} onCancel={onClose}>
      <header>
        <h2 id="dialog-title">{title}</h2>
        <button type="button" class="close" aria-label="close" onClick={onClose}>×</button>
      </header>
      {children}
    </dialog>
  );
}

export function Field({ label, children, hint }: { label: string; children: ComponentChildren; hint?: string }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
      {hint && <small>{hint}</small>}
    </label>
  );
}

/** A form whose submit runs an async action, disabling itself and showing its error meanwhile. */
export function ActionForm({ onSubmit, submit, children, what }: { onSubmit: () => Promise<void>; submit: string; children: ComponentChildren; what?: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const go = async (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await onSubmit();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={go}>
      {children}
      <ErrorNote error={error} what={what} />
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy}>{busy ? `${submit}…` : submit}</button>
      </div>
    </form>
  );
}

/** A button that runs an async action and reports its failure next to itself. */
export function ActionButton({ run, children, disabled, danger, what }: { run: () => Promise<unknown>; children: ComponentChildren; disabled?: boolean; danger?: boolean; what?: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  return (
    <span class="action">
      <button
        type="button"
        class={danger ? 'danger' : undefined}
        disabled={disabled || busy}
        onClick={async () => {
          setBusy(true);
          setError(undefined);
          try {
            await run();
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        {children}
      </button>
      <ErrorNote error={error} what={what} />
    </span>
  );
}

export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-header">
      <h1>{title}</h1>
      <div class="toolbar">{children}</div>
    </div>
  );
}

export const fmtTime = (iso: string) => (iso ? new Date(iso).toLocaleString() : '');
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
}

export function saveFile(name: string, text: string, type = 'application/x-pem-file'): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
