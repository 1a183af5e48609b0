// Key pairs: create (the private key is downloaded once, as EC2 returns it only then), import a
// public key, delete.
import { useState } from 'preact/hooks';
import { ec2, list, str } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, PageHeader, saveFile, Table, useLoad } from '../components/ui.js';

const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));

export function KeyPairs({ session }: PageProps) {
  const keys = useLoad(async () => list((await ec2(session, 'DescribeKeyPairs')).keySet).map((k) => ({ name: str(k.keyName), fingerprint: str(k.keyFingerprint) })), [session]);
  const [sel, setSel] = useState<string>();
  const [dialog, setDialog] = useState<'create' | 'import'>();
  const [name, setName] = useState('');
  const [publicKey, setPublicKey] = useState('');
  const close = () => (setDialog(undefined), setName(''), setPublicKey(''));
  return (
    <section>
      <PageHeader title="Key pairs">
        <button type="button" class="primary" onClick={() => setDialog('create')}>Create key pair</button>
        <button type="button" onClick={() => setDialog('import')}>Import public key</button>
      </PageHeader>
      <ErrorNote error={keys.error} />
      <div class="toolbar">
        <ActionButton danger disabled={!sel} run={async () => (await ec2(session, 'DeleteKeyPair', { KeyName: sel }), setSel(undefined), await keys.reload())}>Delete</ActionButton>
      </div>
      <Table caption="Key pairs" rows={keys.data ?? []} rowKey={(k) => k.name} selected={sel} onSelect={setSel} empty={keys.data ? 'No key pairs.' : 'Loading…'}
        columns={[{ label: 'Name', cell: (k) => k.name }, { label: 'Fingerprint', cell: (k) => <code>{k.fingerprint}</code> }]} />
      {dialog === 'create' && (
        <Dialog title="Create key pair" onClose={close}>
          <p>The private key is downloaded as <code>NAME.pem</code> now; the cloud does not keep it.</p>
          <ActionForm submit="Create and download" onSubmit={async () => {
            const r = await ec2(session, 'CreateKeyPair', { KeyName: name });
            saveFile(`${name}.pem`, str(r.keyMaterial));
            close();
            await keys.reload();
          }}>
            <Field label="Name"><input name="keyName" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
          </ActionForm>
        </Dialog>
      )}
      {dialog === 'import' && (
        <Dialog title="Import public key" onClose={close}>
          <ActionForm submit="Import" onSubmit={async () => (await ec2(session, 'ImportKeyPair', { KeyName: name, PublicKeyMaterial: b64(publicKey.trim()) }), close(), await keys.reload())}>
            <Field label="Name"><input name="keyName" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
            <Field label="Public key (OpenSSH, e.g. the contents of ~/.ssh/id_ed25519.pub)">
              <textarea name="publicKey" rows={4} required value={publicKey} onInput={(e) => setPublicKey(e.currentTarget.value)} />
            </Field>
            <Field label="…or read it from a file">
              <input type="file" accept=".pub,text/plain" onChange={async (e) => {
                const f = e.currentTarget.files?.[0];
                if (f) setPublicKey(await f.text());
              }} />
            </Field>
          </ActionForm>
        </Dialog>
      )}
    </section>
  );
}
