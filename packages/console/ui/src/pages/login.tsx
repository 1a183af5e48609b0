// Sign in with an access key pair: the keys are checked by a signed request (whoami) before they are kept.
import { useEffect, useState } from 'preact/hooks';
import { consoleApi } from '../api/ec2.js';
import type { Session } from '../api/session.js';
import { ActionForm, Field } from '../components/ui.js';

export function Login({ onSignIn }: { onSignIn: (s: Session) => void }) {
  const [accessKeyId, setKey] = useState('');
  const [secretAccessKey, setSecret] = useState('');
  const [region, setRegion] = useState('');
  useEffect(() => {
    fetch('/console/api/info')
      .then((r) => r.json() as Promise<{ region: string }>)
      .then((i) => setRegion((r) => r || i.region))
      .catch(() => {});
  }, []);
  const secure = window.isSecureContext;
  return (
    <main class="login" id="main">
      <h1>Mallee console</h1>
      <p>Sign in with your account's access key pair (the <code>AWS_ACCESS_KEY_ID</code> and <code>AWS_SECRET_ACCESS_KEY</code> of your eucarc).</p>
      {!secure && (
        <p class="note error" role="alert">
          This page is not a secure context, so the browser cannot sign requests: open the console over https (or on localhost).
        </p>
      )}
      <ActionForm
        submit="Sign in"
        onSubmit={async () => {
          const creds = { accessKeyId: accessKeyId.trim(), secretAccessKey: secretAccessKey.trim(), region: region.trim() };
          const who = await consoleApi<{ accountId: string; accountName: string; isAdmin: boolean }>({ ...creds, accountId: '', accountName: '', isAdmin: false }, 'whoami');
          onSignIn({ ...creds, accountId: who.accountId, accountName: who.accountName, isAdmin: who.isAdmin });
        }}
      >
        <Field label="Access key ID">
          <input name="accessKeyId" required autoComplete="username" value={accessKeyId} onInput={(e) => setKey(e.currentTarget.value)} />
        </Field>
        <Field label="Secret access key">
          <input name="secretAccessKey" type="password" required autoComplete="current-password" value={secretAccessKey} onInput={(e) => setSecret(e.currentTarget.value)} />
        </Field>
        <Field label="Region" hint="this cloud's region name (filled in for you)">
          <input name="region" required value={region} onInput={(e) => setRegion(e.currentTarget.value)} />
        </Field>
      </ActionForm>
    </main>
  );
}
