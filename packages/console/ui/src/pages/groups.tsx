// Security groups and their ingress rules: create and delete groups; add a rule (protocol, ports,
// CIDR or another group) and revoke one.
import { useState } from 'preact/hooks';
import { ec2, list, str, type Obj, type Params } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, PageHeader, Table, useLoad } from '../components/ui.js';

interface Rule { key: string; protocol: string; from: string; to: string; source: string; params: Params }
interface Group { id: string; name: string; description: string; rules: Rule[] }

function rulesOf(g: Obj): Rule[] {
  const out: Rule[] = [];
  for (const p of list(g.ipPermissions)) {
    const base = { IpProtocol: str(p.ipProtocol), FromPort: str(p.fromPort), ToPort: str(p.toPort) };
    const common = { protocol: base.IpProtocol, from: base.FromPort, to: base.ToPort };
    for (const r of list(p.ipRanges)) {
      const cidr = str(r.cidrIp);
      out.push({ ...common, key: `${base.IpProtocol}:${base.FromPort}:${base.ToPort}:${cidr}`, source: cidr, params: { 'IpPermissions.1.IpProtocol': base.IpProtocol, 'IpPermissions.1.FromPort': base.FromPort, 'IpPermissions.1.ToPort': base.ToPort, 'IpPermissions.1.IpRanges.1.CidrIp': cidr } });
    }
    for (const u of list(p.groups)) {
      const src = str(u.groupId) || str(u.groupName);
      out.push({ ...common, key: `${base.IpProtocol}:${base.FromPort}:${base.ToPort}:${src}`, source: `${str(u.groupName) || src}${str(u.userId) ? ` (${str(u.userId)})` : ''}`, params: { 'IpPermissions.1.IpProtocol': base.IpProtocol, 'IpPermissions.1.FromPort': base.FromPort, 'IpPermissions.1.ToPort': base.ToPort, 'IpPermissions.1.Groups.1.GroupId': str(u.groupId) || undefined, 'IpPermissions.1.Groups.1.GroupName': str(u.groupId) ? undefined : str(u.groupName) } });
    }
  }
  return out;
}

export function SecurityGroups({ session }: PageProps) {
  const groups = useLoad(async () => list((await ec2(session, 'DescribeSecurityGroups')).securityGroupInfo).map((g): Group => ({ id: str(g.groupId), name: str(g.groupName), description: str(g.groupDescription), rules: rulesOf(g) })), [session]);
  const [sel, setSel] = useState<string>();
  const [creating, setCreating] = useState(false);
  const g = groups.data?.find((x) => x.id === sel) ?? groups.data?.[0];
  return (
    <section>
      <PageHeader title="Security groups">
        <button type="button" class="primary" onClick={() => setCreating(true)}>Create group</button>
      </PageHeader>
      <ErrorNote error={groups.error} />
      <div class="toolbar">
        <ActionButton danger disabled={!g || g.name === 'default'} run={async () => (await ec2(session, 'DeleteSecurityGroup', { GroupId: g?.id }), setSel(undefined), await groups.reload())}>Delete group</ActionButton>
      </div>
      <Table caption="Security groups" rows={groups.data ?? []} rowKey={(x) => x.id} selected={g?.id} onSelect={setSel} empty={groups.data ? 'No groups.' : 'Loading…'}
        columns={[
          { label: 'Group', cell: (x) => <code>{x.id}</code> },
          { label: 'Name', cell: (x) => x.name },
          { label: 'Description', cell: (x) => x.description },
          { label: 'Rules', cell: (x) => x.rules.length },
        ]} />
      {g && <RulesEditor session={session} group={g} groups={groups.data ?? []} reload={groups.reload} />}
      {creating && <CreateGroup session={session} onClose={() => setCreating(false)} onDone={async (id) => (setCreating(false), setSel(id), await groups.reload())} />}
    </section>
  );
}

function RulesEditor({ session, group, groups, reload }: { session: PageProps['session']; group: Group; groups: Group[]; reload: () => Promise<void> }) {
  const [protocol, setProtocol] = useState('tcp');
  const [from, setFrom] = useState('22');
  const [to, setTo] = useState('22');
  const [sourceKind, setSourceKind] = useState<'cidr' | 'group'>('cidr');
  const [cidr, setCidr] = useState('0.0.0.0/0');
  const [sourceGroup, setSourceGroup] = useState('');
  const ports = protocol !== '-1';
  return (
    <section class="panel" aria-labelledby="rules-title">
      <h2 id="rules-title">Inbound rules of {group.name}</h2>
      <Table caption={`Rules of ${group.id}`} rows={group.rules} rowKey={(r) => r.key} empty="No inbound rules: nothing may connect."
        columns={[
          { label: 'Protocol', cell: (r) => (r.protocol === '-1' ? 'all' : r.protocol) },
          { label: 'Ports', cell: (r) => (r.protocol === 'icmp' ? `type ${r.from} code ${r.to}` : r.from === r.to ? r.from : `${r.from}–${r.to}`) },
          { label: 'Source', cell: (r) => r.source },
          { label: 'Remove', cell: (r) => <ActionButton danger run={async () => (await ec2(session, 'RevokeSecurityGroupIngress', { GroupId: group.id, ...r.params }), await reload())}>Revoke</ActionButton> },
        ]} />
      <h3>Add a rule</h3>
      <ActionForm submit="Add rule" onSubmit={async () => {
        await ec2(session, 'AuthorizeSecurityGroupIngress', {
          GroupId: group.id,
          'IpPermissions.1.IpProtocol': protocol,
          'IpPermissions.1.FromPort': ports ? from : undefined,
          'IpPermissions.1.ToPort': ports ? to : undefined,
          ...(sourceKind === 'cidr' ? { 'IpPermissions.1.IpRanges.1.CidrIp': cidr } : { 'IpPermissions.1.Groups.1.GroupId': sourceGroup || groups[0]?.id }),
        });
        await reload();
      }}>
        <div class="row">
          <Field label="Protocol">
            <select name="protocol" value={protocol} onChange={(e) => setProtocol(e.currentTarget.value)}>
              <option value="tcp">TCP</option><option value="udp">UDP</option><option value="icmp">ICMP</option><option value="-1">all</option>
            </select>
          </Field>
          {ports && <Field label={protocol === 'icmp' ? 'ICMP type' : 'From port'}><input name="fromPort" required value={from} onInput={(e) => setFrom(e.currentTarget.value)} /></Field>}
          {ports && <Field label={protocol === 'icmp' ? 'ICMP code' : 'To port'}><input name="toPort" required value={to} onInput={(e) => setTo(e.currentTarget.value)} /></Field>}
          <Field label="Source">
            <select name="sourceKind" value={sourceKind} onChange={(e) => setSourceKind(e.currentTarget.value as 'cidr' | 'group')}>
              <option value="cidr">CIDR</option><option value="group">security group</option>
            </select>
          </Field>
          {sourceKind === 'cidr' ? (
            <Field label="CIDR"><input name="cidr" required value={cidr} onInput={(e) => setCidr(e.currentTarget.value)} /></Field>
          ) : (
            <Field label="Group">
              <select name="sourceGroup" value={sourceGroup || groups[0]?.id} onChange={(e) => setSourceGroup(e.currentTarget.value)}>
                {groups.map((x) => <option key={x.id} value={x.id}>{x.name} ({x.id})</option>)}
              </select>
            </Field>
          )}
        </div>
      </ActionForm>
    </section>
  );
}

function CreateGroup({ session, onClose, onDone }: { session: PageProps['session']; onClose: () => void; onDone: (id: string) => Promise<void> }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  return (
    <Dialog title="Create security group" onClose={onClose}>
      <ActionForm submit="Create" onSubmit={async () => onDone(str((await ec2(session, 'CreateSecurityGroup', { GroupName: name, GroupDescription: description || name })).groupId))}>
        <Field label="Name"><input name="groupName" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
        <Field label="Description"><input name="description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} /></Field>
      </ActionForm>
    </Dialog>
  );
}
