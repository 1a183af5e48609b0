// Cloud admin: every component (clc, walrus, sc, cc, nc) and its state, as DescribeServices reports it.
import { consoleApi } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ErrorNote, fmtTime, PageHeader, Table, useLoad } from '../components/ui.js';

interface Service { type: string; name: string; partition: string; url: string; state: string; lastContact?: string; detail?: string }

export function Services({ session }: PageProps) {
  const services = useLoad(async () => (await consoleApi<{ services: Service[] }>(session, 'services')).services, [session], 5000);
  const bad = (services.data ?? []).filter((s) => s.state !== 'ENABLED');
  return (
    <section>
      <PageHeader title="Services" />
      <p class="summary" role="status">{services.data ? (bad.length ? `${bad.length} of ${services.data.length} components not ENABLED` : `all ${services.data.length} components ENABLED`) : 'loading…'}</p>
      <ErrorNote error={services.error} />
      <Table caption="Components" rows={services.data ?? []} rowKey={(s) => `${s.type}/${s.name}/${s.url}`} empty="No components." columns={[
        { label: 'Type', cell: (s) => s.type },
        { label: 'Name', cell: (s) => s.name },
        { label: 'Zone', cell: (s) => s.partition },
        { label: 'State', cell: (s) => <span class={`state state-${s.state.toLowerCase()}`}>{s.state}</span> },
        { label: 'URL', cell: (s) => <code>{s.url}</code> },
        { label: 'Last contact', cell: (s) => (s.lastContact ? fmtTime(s.lastContact) : '') },
        { label: 'Detail', cell: (s) => s.detail ?? '' },
      ]} />
    </section>
  );
}
