// Buckets and objects in Walrus: list, create and delete buckets; browse a bucket by "folder",
// upload files with progress, download (presigned URL) and delete objects.
import { useState } from 'preact/hooks';
import { createBucket, deleteBucket, deleteObject, downloadUrl, listBuckets, listObjects, uploadObject } from '../api/s3.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, fmtBytes, fmtTime, PageHeader, Table, useLoad } from '../components/ui.js';

export function Buckets({ session, path }: PageProps) {
  const [bucket, ...prefixParts] = path;
  if (bucket) return <Objects session={session} bucket={bucket} prefix={prefixParts.length ? prefixParts.join('/') + '/' : ''} />;
  return <BucketList session={session} />;
}

const hrefOf = (bucket: string, prefix = '') => `#/buckets/${[bucket, ...prefix.split('/').filter(Boolean)].map(encodeURIComponent).join('/')}`;

function BucketList({ session }: { session: PageProps['session'] }) {
  const buckets = useLoad(() => listBuckets(session), [session]);
  const [sel, setSel] = useState<string>();
  const [creating, setCreating] = useState(false);
  const [name, setName] = useState('');
  return (
    <section>
      <PageHeader title="Buckets">
        <button type="button" class="primary" onClick={() => setCreating(true)}>Create bucket</button>
      </PageHeader>
      <ErrorNote error={buckets.error} what="S3 (Walrus)" />
      <div class="toolbar">
        <ActionButton danger disabled={!sel} run={async () => (await deleteBucket(session, sel!), setSel(undefined), await buckets.reload())}>Delete bucket</ActionButton>
      </div>
      <Table caption="Buckets" rows={buckets.data ?? []} rowKey={(b) => b.name} selected={sel} onSelect={setSel} empty={buckets.data ? 'No buckets.' : 'Loading…'}
        columns={[
          { label: 'Bucket', cell: (b) => <a href={hrefOf(b.name)}>{b.name}</a> },
          { label: 'Created', cell: (b) => fmtTime(b.created) },
        ]} />
      {creating && (
        <Dialog title="Create bucket" onClose={() => setCreating(false)}>
          <ActionForm submit="Create" onSubmit={async () => (await createBucket(session, name.trim()), setCreating(false), setName(''), await buckets.reload())}>
            <Field label="Bucket name" hint="3–63 characters: lower-case letters, digits, dots and hyphens">
              <input name="bucketName" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </Field>
          </ActionForm>
        </Dialog>
      )}
    </section>
  );
}

let uploadSeq = 0;

interface Upload { id: number; name: string; sent: number; total: number; state: 'uploading' | 'done' | 'failed'; error?: string }

function Objects({ session, bucket, prefix }: { session: PageProps['session']; bucket: string; prefix: string }) {
  const listing = useLoad(() => listObjects(session, bucket, prefix), [session, bucket, prefix]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const crumbs = prefix.split('/').filter(Boolean);
  const upload = async (files: FileList | null) => {
    if (!files) return;
    for (const file of Array.from(files)) {
      const id = ++uploadSeq;
      setUploads((list) => [...list, { id, name: file.name, sent: 0, total: file.size, state: 'uploading' }]);
      const update = (patch: Partial<Upload>) => setUploads((list) => list.map((x) => (x.id === id ? { ...x, ...patch } : x)));
      try {
        await uploadObject(session, bucket, prefix + file.name, file, (sent, total) => update({ sent, total }));
        update({ state: 'done', sent: file.size });
      } catch (err) {
        update({ state: 'failed', error: (err as Error).message });
      }
    }
    await listing.reload();
  };
  const rows = [
    ...(listing.data?.prefixes ?? []).map((p) => ({ key: p, folder: true, size: 0, modified: '' })),
    ...(listing.data?.objects ?? []).filter((o) => o.key !== prefix).map((o) => ({ ...o, folder: false })),
  ];
  return (
    <section>
      <PageHeader title={`Bucket ${bucket}`} />
      <nav aria-label="folder" class="crumbs">
        <a href="#/buckets">Buckets</a> / <a href={hrefOf(bucket)}>{bucket}</a>
        {crumbs.map((c, i) => <span key={i}> / <a href={hrefOf(bucket, crumbs.slice(0, i + 1).join('/'))}>{c}</a></span>)}
      </nav>
      <div class="toolbar">
        <Field label="Upload files">
          <input type="file" name="upload" multiple onChange={(e) => void upload(e.currentTarget.files)} />
        </Field>
      </div>
      {uploads.length > 0 && (
        <ul class="uploads" aria-label="uploads">
          {uploads.map((u) => (
            <li key={u.id} data-state={u.state}>
              {u.name}: <progress max={u.total || 1} value={u.sent} aria-label={`upload of ${u.name}`} /> {u.state === 'uploading' ? `${fmtBytes(u.sent)} of ${fmtBytes(u.total)}` : u.state === 'done' ? 'uploaded' : `failed: ${u.error}`}
            </li>
          ))}
        </ul>
      )}
      <ErrorNote error={listing.error} />
      <Table caption={`Objects in ${bucket}/${prefix}`} rows={rows} rowKey={(r) => r.key} empty={listing.data ? 'Empty.' : 'Loading…'}
        columns={[
          { label: 'Name', cell: (r) => (r.folder ? <a href={hrefOf(bucket, r.key)}>{r.key.slice(prefix.length)}</a> : r.key.slice(prefix.length)) },
          { label: 'Size', cell: (r) => (r.folder ? 'folder' : fmtBytes(r.size)) },
          { label: 'Modified', cell: (r) => fmtTime(r.modified) },
          { label: 'Actions', cell: (r) => (r.folder ? null : (
            <span class="actions">
              <ActionButton run={async () => {
                const a = document.createElement('a');
                a.href = await downloadUrl(session, bucket, r.key);
                a.download = r.key.split('/').pop() ?? r.key;
                document.body.append(a);
                a.click();
                a.remove();
              }}>Download</ActionButton>
              <ActionButton danger run={async () => (await deleteObject(session, bucket, r.key), await listing.reload())}>Delete</ActionButton>
            </span>
          )) },
        ]} />
      {listing.data?.nextToken && <p class="summary">Showing the first 1,000 entries.</p>}
    </section>
  );
}
