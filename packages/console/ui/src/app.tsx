// Sign-in, the layout (navigation + page) and hash routing (#/instances, #/buckets/NAME, …).
import { useEffect, useState } from 'preact/hooks';
import { forgetSigners, loadSession, saveSession, type Session } from './api/session.js';
import { Login } from './pages/login.js';
import { Instances } from './pages/instances.js';
import { Volumes } from './pages/volumes.js';
import { Addresses } from './pages/addresses.js';
import { KeyPairs } from './pages/keypairs.js';
import { SecurityGroups } from './pages/groups.js';
import { Images } from './pages/images.js';
import { Buckets } from './pages/buckets.js';
import { Services } from './pages/admin-services.js';
import { Capacity } from './pages/admin-capacity.js';
import { Metrics } from './pages/admin-metrics.js';

export interface PageProps {
  session: Session;
  /** Route segments after the page name (#/buckets/photos/a/b → ["photos", "a", "b"]). */
  path: string[];
}

const PAGES: { id: string; label: string; admin?: boolean; page: (p: PageProps) => preact.JSX.Element }[] = [
  { id: 'instances', label: 'Instances', page: Instances },
  { id: 'volumes', label: 'Volumes & snapshots', page: Volumes },
  { id: 'addresses', label: 'Elastic IPs', page: Addresses },
  { id: 'keypairs', label: 'Key pairs', page: KeyPairs },
  { id: 'groups', label: 'Security groups', page: SecurityGroups },
  { id: 'images', label: 'Images', page: Images },
  { id: 'buckets', label: 'Buckets', page: Buckets },
  { id: 'services', label: 'Services', admin: true, page: Services },
  { id: 'capacity', label: 'Capacity', admin: true, page: Capacity },
  { id: 'metrics', label: 'Metrics', admin: true, page: Metrics },
];

function useHash(): string[] {
  const read = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const on = () => setParts(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return parts;
}

export function App() {
  const [session, setSession] = useState(loadSession);
  const [pageId = 'instances', ...rest] = useHash();
  const signIn = (s: Session) => {
    saveSession(s);
    setSession(s);
  };
  const signOut = () => {
    saveSession(undefined);
    forgetSigners();
    setSession(undefined);
    location.hash = '#/instances';
  };
  const pages = PAGES.filter((p) => !p.admin || session?.isAdmin);
  const current = pages.find((p) => p.id === pageId) ?? pages[0]!;
  useEffect(() => {
    document.title = session ? `${current.label} · Mallee console` : 'Sign in · Mallee console';
  }, [current.label, session]);
  if (!session) return <Login onSignIn={signIn} />;
  return (
    <div class="layout">
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">Mallee</span>
        <span class="who" data-testid="who">
          {session.accountName} ({session.accountId}) · region {session.region}
        </span>
        <button type="button" onClick={signOut}>Sign out</button>
      </header>
      <nav aria-label="console pages">
        <ul>
          {pages.filter((p) => !p.admin).map((p) => (
            <li key={p.id}><a href={`#/${p.id}`} aria-current={p === current ? 'page' : undefined}>{p.label}</a></li>
          ))}
        </ul>
        {session.isAdmin && (
          <>
            <h2>Cloud admin</h2>
            <ul>
              {pages.filter((p) => p.admin).map((p) => (
                <li key={p.id}><a href={`#/${p.id}`} aria-current={p === current ? 'page' : undefined}>{p.label}</a></li>
              ))}
            </ul>
          </>
        )}
      </nav>
      <main id="main" tabIndex={-1}>
        <current.page key={current.id} session={session} path={current === pages.find((p) => p.id === pageId) ? rest : []} />
      </main>
    </div>
  );
}
