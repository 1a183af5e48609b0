// Instances: the account's instances with live state (polled), the launch wizard (image, type, key
// pair, security groups, user-data), lifecycle actions and the console output.
import { useMemo, useState } from 'preact/hooks';
import { ec2, list, listParams, str, type Obj } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, fmtTime, PageHeader, Table, useLoad } from '../components/ui.js';

export interface Instance {
  id: string;
  state: string;
  type: string;
  image: string;
  zone: string;
  privateIp: string;
  publicIp: string;
  keyName: string;
  launched: string;
  name: string;
  groups: string;
}

export async function describeInstances(session: PageProps['session']): Promise<Instance[]> {
  const out: Instance[] = [];
  let token: string | undefined;
  do {
    const r = await ec2(session, 'DescribeInstances', { MaxResults: 1000, NextToken: token });
    for (const res of list(r.reservationSet)) {
      const groups = list(res.groupSet).map((g) => str(g.groupName) || str(g.groupId)).join(', ');
      for (const i of list(res.instancesSet)) {
        const tags = list<Obj>(i.tagSet);
        out.push({
          id: str(i.instanceId),
          state: str((i.instanceState as Obj | undefined)?.name),
          type: str(i.instanceType),
          image: str(i.imageId),
          zone: str((i.placement as Obj | undefined)?.availabilityZone),
          privateIp: str(i.privateIpAddress),
          publicIp: str(i.ipAddress),
          keyName: str(i.keyName),
          launched: str(i.launchTime),
          name: str(tags.find((t) => t.key === 'Name')?.value),
          groups: groups || list(i.groupSet).map((g) => str(g.groupName)).join(', '),
        });
      }
    }
    token = str(r.nextToken) || undefined;
  } while (token);
  return out;
}

const PAGE = 100;

export function Instances({ session }: PageProps) {
  const instances = useLoad(() => describeInstances(session), [session], 4000);
  const [selected, setSelected] = useState<string>();
  const [launching, setLaunching] = useState(false);
  const [consoleOf, setConsoleOf] = useState<string>();
  const [filter, setFilter] = useState('');
  const [page, setPage] = useState(0);
  const all = instances.data ?? [];
  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    return f ? all.filter((i) => [i.id, i.state, i.name, i.type, i.image, i.privateIp, i.publicIp, i.keyName].some((v) => v.toLowerCase().includes(f))) : all;
  }, [all, filter]);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  const at = Math.min(page, pages - 1);
  const sel = all.find((i) => i.id === selected);
  const act = (action: string) => async () => {
    await ec2(session, action, { 'InstanceId.1': selected });
    await instances.reload();
  };
  const counts = all.reduce<Record<string, number>>((m, i) => ((m[i.state] = (m[i.state] ?? 0) + 1), m), {});
  return (
    <section>
      <PageHeader title="Instances">
        <button type="button" class="primary" onClick={() => setLaunching(true)}>Launch instances</button>
      </PageHeader>
      <p class="summary" role="status" data-testid="instance-summary">
        {instances.data ? `${all.length} instances` : 'loading…'}
        {Object.entries(counts).map(([s, n]) => ` · ${n} ${s}`).join('')}
      </p>
      <ErrorNote error={instances.error} />
      <div class="toolbar">
        <Field label="Filter">
          <input type="search" value={filter} onInput={(e) => (setFilter(e.currentTarget.value), setPage(0))} placeholder="id, name, state, address…" />
        </Field>
        <ActionButton run={act('RebootInstances')} disabled={!sel || sel.state !== 'running'}>Reboot</ActionButton>
        <ActionButton run={act('StopInstances')} disabled={!sel || sel.state !== 'running'}>Stop</ActionButton>
        <ActionButton run={act('StartInstances')} disabled={!sel || sel.state !== 'stopped'}>Start</ActionButton>
        <button type="button" disabled={!sel} onClick={() => setConsoleOf(selected)}>Console output</button>
        <ActionButton run={act('TerminateInstances')} disabled={!sel || sel.state === 'terminated'} danger>Terminate</ActionButton>
      </div>
      <Table
        caption={`Instances ${shown.length ? `${at * PAGE + 1}–${Math.min(shown.length, (at + 1) * PAGE)} of ${shown.length}` : ''}`}
        rows={shown.slice(at * PAGE, (at + 1) * PAGE)}
        rowKey={(i) => i.id}
        selected={selected}
        onSelect={setSelected}
        empty={instances.data ? 'No instances: launch one.' : 'Loading…'}
        columns={[
          { label: 'Instance', cell: (i) => <code>{i.id}</code> },
          { label: 'Name', cell: (i) => i.name },
          { label: 'State', cell: (i) => <span class={`state state-${i.state}`}>{i.state}</span> },
          { label: 'Type', cell: (i) => i.type },
          { label: 'Image', cell: (i) => i.image },
          { label: 'Zone', cell: (i) => i.zone },
          { label: 'Private IP', cell: (i) => i.privateIp },
          { label: 'Public IP', cell: (i) => i.publicIp },
          { label: 'Key', cell: (i) => i.keyName },
          { label: 'Groups', cell: (i) => i.groups },
          { label: 'Launched', cell: (i) => fmtTime(i.launched) },
        ]}
      />
      {pages > 1 && (
        <nav class="pager" aria-label="instance pages">
          <button type="button" disabled={at === 0} onClick={() => setPage(at - 1)}>Previous</button>
          <span>page {at + 1} of {pages}</span>
          <button type="button" disabled={at >= pages - 1} onClick={() => setPage(at + 1)}>Next</button>
        </nav>
      )}
      {launching && <LaunchWizard session={session} onClose={() => setLaunching(false)} onLaunched={async (ids) => (setLaunching(false), setSelected(ids[0]), await instances.reload())} />}
      {consoleOf && <ConsoleOutput session={session} instanceId={consoleOf} onClose={() => setConsoleOf(undefined)} />}
    </section>
  );
}

/** Base64 of UTF-8 text (EC2's UserData). */
const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));

function LaunchWizard({ session, onClose, onLaunched }: Omit<PageProps, 'path'> & { onClose: () => void; onLaunched: (ids: string[]) => Promise<void> }) {
  const choices = useLoad(async () => {
    const [images, types, keys, groups, zones] = await Promise.all([
      ec2(session, 'DescribeImages', { 'ExecutableBy.1': 'self' }),
      ec2(session, 'DescribeInstanceTypes'),
      ec2(session, 'DescribeKeyPairs'),
      ec2(session, 'DescribeSecurityGroups'),
      ec2(session, 'DescribeAvailabilityZones'),
    ]);
    return {
      images: list(images.imagesSet).filter((i) => !str(i.imageType) || str(i.imageType) === 'machine').map((i) => ({ id: str(i.imageId), name: str(i.name) || str(i.imageLocation) })),
      types: list(types.instanceTypeSet).map((t) => ({ id: str(t.instanceType), cpu: str((t.vCpuInfo as Obj | undefined)?.defaultVCpus), mem: str((t.memoryInfo as Obj | undefined)?.sizeInMiB) })),
      keys: list(keys.keySet).map((k) => str(k.keyName)),
      groups: list(groups.securityGroupInfo).map((g) => ({ id: str(g.groupId), name: str(g.groupName) })),
      zones: list(zones.availabilityZoneInfo).map((z) => str(z.zoneName)),
    };
  }, [session]);
  const [image, setImage] = useState('');
  const [type, setType] = useState('');
  const [key, setKey] = useState('');
  const [groups, setGroups] = useState<string[]>([]);
  const [zone, setZone] = useState('');
  const [count, setCount] = useState('1');
  const [userData, setUserData] = useState('');
  const c = choices.data;
  return (
    <Dialog title="Launch instances" onClose={onClose}>
      <ErrorNote error={choices.error} />
      {!c ? (
        <p>Loading images, types, key pairs and groups…</p>
      ) : (
        <ActionForm
          submit="Launch"
          onSubmit={async () => {
            const r = await ec2(session, 'RunInstances', {
              ImageId: image || c.images[0]?.id,
              InstanceType: type || undefined,
              KeyName: key || undefined,
              MinCount: count,
              MaxCount: count,
              'Placement.AvailabilityZone': zone || undefined,
              UserData: userData ? b64(userData) : undefined,
              ...listParams('SecurityGroupId', groups),
            });
            await onLaunched(list(r.instancesSet).map((i) => str(i.instanceId)));
          }}
        >
          <fieldset>
            <legend>1. Image</legend>
            <Field label="Machine image">
              <select name="image" required value={image || c.images[0]?.id} onChange={(e) => setImage(e.currentTarget.value)}>
                {c.images.map((i) => <option key={i.id} value={i.id}>{i.id} — {i.name}</option>)}
              </select>
            </Field>
            {c.images.length === 0 && <p class="note error">No image you may launch: register one first (Images).</p>}
          </fieldset>
          <fieldset>
            <legend>2. Type and placement</legend>
            <Field label="Instance type">
              <select name="type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
                <option value="">default</option>
                {c.types.map((t) => <option key={t.id} value={t.id}>{t.id} ({t.cpu} vCPU, {t.mem} MiB)</option>)}
              </select>
            </Field>
            <Field label="Availability zone">
              <select name="zone" value={zone} onChange={(e) => setZone(e.currentTarget.value)}>
                <option value="">any</option>
                {c.zones.map((z) => <option key={z} value={z}>{z}</option>)}
              </select>
            </Field>
            <Field label="Count">
              <input name="count" type="number" min={1} max={100} value={count} onInput={(e) => setCount(e.currentTarget.value)} />
            </Field>
          </fieldset>
          <fieldset>
            <legend>3. Access</legend>
            <Field label="Key pair">
              <select name="key" value={key} onChange={(e) => setKey(e.currentTarget.value)}>
                <option value="">none</option>
                {c.keys.map((k) => <option key={k} value={k}>{k}</option>)}
              </select>
            </Field>
            <Field label="Security groups" hint="none chosen: the default group">
              <select name="groups" multiple onChange={(e) => setGroups(Array.from(e.currentTarget.selectedOptions, (o) => o.value))}>
                {c.groups.map((g) => <option key={g.id} value={g.id} selected={groups.includes(g.id)}>{g.name} ({g.id})</option>)}
              </select>
            </Field>
          </fieldset>
          <fieldset>
            <legend>4. User data</legend>
            <Field label="User data (text; sent base64-encoded)">
              <textarea name="userData" rows={4} value={userData} onInput={(e) => setUserData(e.currentTarget.value)} />
            </Field>
          </fieldset>
        </ActionForm>
      )}
    </Dialog>
  );
}

function ConsoleOutput({ session, instanceId, onClose }: Omit<PageProps, 'path'> & { instanceId: string; onClose: () => void }) {
  const out = useLoad(async () => {
    const r = await ec2(session, 'GetConsoleOutput', { InstanceId: instanceId });
    const text = str(r.output);
    let decoded = '';
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0)));
    } catch {
      decoded = text;
    }
    return { text: decoded, at: str(r.timestamp) };
  }, [session, instanceId], 5000);
  return (
    <Dialog title={`Console output of ${instanceId}`} onClose={onClose}>
      <ErrorNote error={out.error} />
      <p class="summary">{out.data?.at ? `as of ${fmtTime(out.data.at)}` : ''} (refreshes every 5 s)</p>
      <pre class="console" tabIndex={0} aria-label="console output">{out.data ? out.data.text || '(no output yet)' : 'Loading…'}</pre>
    </Dialog>
  );
}
