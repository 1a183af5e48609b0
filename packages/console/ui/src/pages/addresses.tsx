// Elastic IPs: allocate, associate with an instance, disassociate, release (botocore EC2 shapes;
// InvalidAction from a cloud without them is shown as "not available").
import { useState } from 'preact/hooks';
import { ec2, list, str } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, PageHeader, Table, useLoad } from '../components/ui.js';
import { describeInstances } from './instances.js';

interface Address { ip: string; allocationId: string; instance: string; associationId: string; domain: string }

export function Addresses({ session }: PageProps) {
  const addresses = useLoad(async () => list((await ec2(session, 'DescribeAddresses')).addressesSet).map((a): Address => ({
    ip: str(a.publicIp), allocationId: str(a.allocationId), instance: str(a.instanceId), associationId: str(a.associationId), domain: str(a.domain) || 'standard',
  })), [session], 4000);
  const [sel, setSel] = useState<string>();
  const [associating, setAssociating] = useState(false);
  const a = addresses.data?.find((x) => x.ip === sel);
  const byIp = (x: Address | undefined) => (x?.allocationId && x.domain === 'vpc' ? { AllocationId: x.allocationId } : { PublicIp: x?.ip });
  return (
    <section>
      <PageHeader title="Elastic IPs">
        <ActionButton disabled={!!addresses.error} what="AllocateAddress" run={async () => {
          const r = await ec2(session, 'AllocateAddress');
          setSel(str(r.publicIp));
          await addresses.reload();
        }}>Allocate address</ActionButton>
      </PageHeader>
      <ErrorNote error={addresses.error} what="Elastic IPs (AllocateAddress, AssociateAddress, …)" />
      {!addresses.error && (
        <>
          <div class="toolbar">
            <button type="button" disabled={!a || !!a.instance} onClick={() => setAssociating(true)}>Associate</button>
            <ActionButton disabled={!a?.instance} what="DisassociateAddress" run={async () => (await ec2(session, 'DisassociateAddress', a?.associationId && a.domain === 'vpc' ? { AssociationId: a.associationId } : { PublicIp: a?.ip }), await addresses.reload())}>Disassociate</ActionButton>
            <ActionButton danger disabled={!a || !!a.instance} what="ReleaseAddress" run={async () => (await ec2(session, 'ReleaseAddress', byIp(a)), setSel(undefined), await addresses.reload())}>Release</ActionButton>
          </div>
          <Table caption="Addresses" rows={addresses.data ?? []} rowKey={(x) => x.ip} selected={sel} onSelect={setSel} empty={addresses.data ? 'No addresses allocated.' : 'Loading…'}
            columns={[
              { label: 'Public IP', cell: (x) => <code>{x.ip}</code> },
              { label: 'Allocation', cell: (x) => x.allocationId },
              { label: 'Instance', cell: (x) => x.instance },
              { label: 'Domain', cell: (x) => x.domain },
            ]} />
        </>
      )}
      {associating && a && <Associate session={session} address={a} onClose={() => setAssociating(false)} onDone={async () => (setAssociating(false), await addresses.reload())} />}
    </section>
  );
}

function Associate({ session, address, onClose, onDone }: Omit<PageProps, 'path'> & { address: Address; onClose: () => void; onDone: () => Promise<void> }) {
  const instances = useLoad(async () => (await describeInstances(session)).filter((i) => i.state === 'running'), [session]);
  const [instance, setInstance] = useState('');
  return (
    <Dialog title={`Associate ${address.ip}`} onClose={onClose}>
      <ErrorNote error={instances.error} />
      <ActionForm submit="Associate" what="AssociateAddress" onSubmit={async () => (await ec2(session, 'AssociateAddress', { PublicIp: address.ip, InstanceId: instance || instances.data?.[0]?.id }), await onDone())}>
        <Field label="Instance">
          <select name="instance" required value={instance || instances.data?.[0]?.id} onChange={(e) => setInstance(e.currentTarget.value)}>
            {(instances.data ?? []).map((i) => <option key={i.id} value={i.id}>{i.id}{i.name ? ` (${i.name})` : ''}</option>)}
          </select>
        </Field>
      </ActionForm>
    </Dialog>
  );
}
