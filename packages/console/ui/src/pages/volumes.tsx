// Volumes and snapshots (EBS): create, attach to an instance, detach, snapshot, restore a snapshot
// to a new volume, delete. Built against the botocore EC2 shapes; a cloud without its Storage
// Controller answers InvalidAction, shown as "not available".
import { useState } from 'preact/hooks';
import { ec2, list, str, type Obj } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ActionForm, Dialog, ErrorNote, Field, fmtTime, PageHeader, Table, useLoad } from '../components/ui.js';
import { describeInstances } from './instances.js';

interface Volume { id: string; size: string; zone: string; state: string; snapshot: string; attachedTo: string; device: string; created: string }
interface Snapshot { id: string; volume: string; state: string; progress: string; size: string; started: string; description: string }

export function Volumes({ session }: PageProps) {
  const volumes = useLoad(async () => {
    const r = await ec2(session, 'DescribeVolumes');
    return list(r.volumeSet).map((v): Volume => {
      const a = list<Obj>(v.attachmentSet)[0];
      return { id: str(v.volumeId), size: str(v.size), zone: str(v.availabilityZone), state: str(v.status), snapshot: str(v.snapshotId), attachedTo: str(a?.instanceId), device: str(a?.device), created: str(v.createTime) };
    });
  }, [session], 4000);
  const snapshots = useLoad(async () => {
    const r = await ec2(session, 'DescribeSnapshots', { 'Owner.1': 'self' });
    return list(r.snapshotSet).map((s): Snapshot => ({ id: str(s.snapshotId), volume: str(s.volumeId), state: str(s.status), progress: str(s.progress), size: str(s.volumeSize), started: str(s.startTime), description: str(s.description) }));
  }, [session], 4000);
  const [vol, setVol] = useState<string>();
  const [snap, setSnap] = useState<string>();
  const [dialog, setDialog] = useState<'create' | 'attach' | 'snapshot' | undefined>();
  const [fromSnapshot, setFromSnapshot] = useState<string>();
  const v = volumes.data?.find((x) => x.id === vol);
  const reload = async () => void (await Promise.all([volumes.reload(), snapshots.reload()]));
  return (
    <section>
      <PageHeader title="Volumes">
        <button type="button" class="primary" onClick={() => (setFromSnapshot(undefined), setDialog('create'))} disabled={!!volumes.error}>Create volume</button>
      </PageHeader>
      <ErrorNote error={volumes.error} what="EBS volumes (CreateVolume, AttachVolume, …)" />
      {!volumes.error && (
        <>
          <div class="toolbar">
            <button type="button" disabled={!v || v.state !== 'available'} onClick={() => setDialog('attach')}>Attach</button>
            <ActionButton disabled={!v || !v.attachedTo} run={async () => (await ec2(session, 'DetachVolume', { VolumeId: vol }), await reload())}>Detach</ActionButton>
            <button type="button" disabled={!v} onClick={() => setDialog('snapshot')}>Create snapshot</button>
            <ActionButton danger disabled={!v || v.state !== 'available'} run={async () => (await ec2(session, 'DeleteVolume', { VolumeId: vol }), setVol(undefined), await reload())}>Delete</ActionButton>
          </div>
          <Table caption="Volumes" rows={volumes.data ?? []} rowKey={(x) => x.id} selected={vol} onSelect={setVol} empty={volumes.data ? 'No volumes.' : 'Loading…'}
            columns={[
              { label: 'Volume', cell: (x) => <code>{x.id}</code> },
              { label: 'Size (GiB)', cell: (x) => x.size },
              { label: 'Zone', cell: (x) => x.zone },
              { label: 'State', cell: (x) => <span class={`state state-${x.state}`}>{x.state}</span> },
              { label: 'Attached to', cell: (x) => (x.attachedTo ? `${x.attachedTo} (${x.device})` : '') },
              { label: 'From snapshot', cell: (x) => x.snapshot },
              { label: 'Created', cell: (x) => fmtTime(x.created) },
            ]} />
        </>
      )}
      <h2>Snapshots</h2>
      <ErrorNote error={snapshots.error} what="EBS snapshots (CreateSnapshot, DescribeSnapshots, …)" />
      {!snapshots.error && (
        <>
          <div class="toolbar">
            <button type="button" disabled={!snap} onClick={() => (setFromSnapshot(snap), setDialog('create'))}>Restore to a new volume</button>
            <ActionButton danger disabled={!snap} run={async () => (await ec2(session, 'DeleteSnapshot', { SnapshotId: snap }), setSnap(undefined), await reload())}>Delete</ActionButton>
          </div>
          <Table caption="Snapshots" rows={snapshots.data ?? []} rowKey={(x) => x.id} selected={snap} onSelect={setSnap} empty={snapshots.data ? 'No snapshots.' : 'Loading…'}
            columns={[
              { label: 'Snapshot', cell: (x) => <code>{x.id}</code> },
              { label: 'Volume', cell: (x) => x.volume },
              { label: 'State', cell: (x) => <span class={`state state-${x.state}`}>{x.state}</span> },
              { label: 'Progress', cell: (x) => <progress max={100} value={parseInt(x.progress) || 0} aria-label={`${x.id} progress`}>{x.progress}</progress> },
              { label: 'Size (GiB)', cell: (x) => x.size },
              { label: 'Description', cell: (x) => x.description },
              { label: 'Started', cell: (x) => fmtTime(x.started) },
            ]} />
        </>
      )}
      {dialog === 'create' && <CreateVolume session={session} snapshot={fromSnapshot} onDone={async () => (setDialog(undefined), await reload())} onClose={() => setDialog(undefined)} />}
      {dialog === 'attach' && v && <AttachVolume session={session} volume={v} onDone={async () => (setDialog(undefined), await reload())} onClose={() => setDialog(undefined)} />}
      {dialog === 'snapshot' && v && (
        <SnapshotVolume session={session} volume={v} onDone={async () => (setDialog(undefined), await reload())} onClose={() => setDialog(undefined)} />
      )}
    </section>
  );
}

type DialogProps = PageProps & { onDone: () => Promise<void>; onClose: () => void };

function CreateVolume({ session, snapshot, onDone, onClose }: Omit<DialogProps, 'path'> & { snapshot?: string }) {
  const zones = useLoad(async () => list((await ec2(session, 'DescribeAvailabilityZones')).availabilityZoneInfo).map((z) => str(z.zoneName)), [session]);
  const [size, setSize] = useState(snapshot ? '' : '1');
  const [zone, setZone] = useState('');
  return (
    <Dialog title={snapshot ? `New volume from ${snapshot}` : 'Create volume'} onClose={onClose}>
      <ActionForm submit="Create" what="CreateVolume" onSubmit={async () => (await ec2(session, 'CreateVolume', { Size: size || undefined, AvailabilityZone: zone || zones.data?.[0], SnapshotId: snapshot }), await onDone())}>
        <Field label="Size (GiB)" hint={snapshot ? "empty: the snapshot's size" : undefined}>
          <input name="size" type="number" min={1} required={!snapshot} value={size} onInput={(e) => setSize(e.currentTarget.value)} />
        </Field>
        <Field label="Availability zone">
          <select name="zone" value={zone || zones.data?.[0]} onChange={(e) => setZone(e.currentTarget.value)}>
            {(zones.data ?? []).map((z) => <option key={z} value={z}>{z}</option>)}
          </select>
        </Field>
      </ActionForm>
    </Dialog>
  );
}

function AttachVolume({ session, volume, onDone, onClose }: Omit<DialogProps, 'path'> & { volume: Volume }) {
  const instances = useLoad(async () => (await describeInstances(session)).filter((i) => i.state === 'running' && (!volume.zone || i.zone === volume.zone)), [session]);
  const [instance, setInstance] = useState('');
  const [device, setDevice] = useState('/dev/sdf');
  return (
    <Dialog title={`Attach ${volume.id}`} onClose={onClose}>
      <ErrorNote error={instances.error} />
      <ActionForm submit="Attach" what="AttachVolume" onSubmit={async () => (await ec2(session, 'AttachVolume', { VolumeId: volume.id, InstanceId: instance || instances.data?.[0]?.id, Device: device }), await onDone())}>
        <Field label="Instance" hint={`running instances in ${volume.zone || 'the volume’s zone'}`}>
          <select name="instance" required value={instance || instances.data?.[0]?.id} onChange={(e) => setInstance(e.currentTarget.value)}>
            {(instances.data ?? []).map((i) => <option key={i.id} value={i.id}>{i.id}{i.name ? ` (${i.name})` : ''}</option>)}
          </select>
        </Field>
        <Field label="Device">
          <input name="device" required value={device} onInput={(e) => setDevice(e.currentTarget.value)} />
        </Field>
      </ActionForm>
    </Dialog>
  );
}

function SnapshotVolume({ session, volume, onDone, onClose }: Omit<DialogProps, 'path'> & { volume: Volume }) {
  const [description, setDescription] = useState('');
  return (
    <Dialog title={`Snapshot ${volume.id}`} onClose={onClose}>
      <ActionForm submit="Create snapshot" what="CreateSnapshot" onSubmit={async () => (await ec2(session, 'CreateSnapshot', { VolumeId: volume.id, Description: description }), await onDone())}>
        <Field label="Description">
          <input name="description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </Field>
      </ActionForm>
    </Dialog>
  );
}
