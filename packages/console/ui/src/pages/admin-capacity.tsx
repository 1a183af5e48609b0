// Cloud admin: capacity per zone and instance type, from Eucalyptus's verbose zone listing
// (DescribeAvailabilityZones ZoneName.1=verbose, what euca-describe-availability-zones verbose shows).
import { ec2, list, str } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ErrorNote, PageHeader, Table, useLoad } from '../components/ui.js';

interface Row { zone: string; type: string; free: number; max: number; cpu: string; ram: string; disk: string }

export function parseVerboseZones(items: { zoneName: string; zoneState: string }[]): { zones: { name: string; detail: string }[]; rows: Row[] } {
  const zones: { name: string; detail: string }[] = [];
  const rows: Row[] = [];
  let zone = '';
  for (const z of items) {
    if (!z.zoneName.startsWith('|-')) {
      zone = z.zoneName;
      zones.push({ name: zone, detail: z.zoneState });
      continue;
    }
    const m = /^(\d+)\s*\/\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(z.zoneState.trim());
    if (m) rows.push({ zone, type: z.zoneName.replace(/^\|-\s*/, ''), free: Number(m[1]), max: Number(m[2]), cpu: m[3]!, ram: m[4]!, disk: m[5]! });
  }
  return { zones, rows };
}

export function Capacity({ session }: PageProps) {
  const data = useLoad(async () => parseVerboseZones(list((await ec2(session, 'DescribeAvailabilityZones', { 'ZoneName.1': 'verbose' })).availabilityZoneInfo).map((z) => ({ zoneName: str(z.zoneName), zoneState: str(z.zoneState) }))), [session], 5000);
  return (
    <section>
      <PageHeader title="Capacity" />
      <p>Instances of each type each zone can still start (free) and could hold when empty (max).</p>
      <ErrorNote error={data.error} />
      {(data.data?.zones ?? []).map((z) => (
        <div key={z.name} class="panel">
          <h2>{z.name} <small>{z.detail}</small></h2>
          <Table caption={`Capacity of ${z.name}`} rows={(data.data?.rows ?? []).filter((r) => r.zone === z.name)} rowKey={(r) => r.type} empty="No instance types." columns={[
            { label: 'Type', cell: (r) => r.type },
            { label: 'Free / max', cell: (r) => `${r.free} / ${r.max}` },
            { label: 'In use', cell: (r) => <meter min={0} max={r.max || 1} value={r.max - r.free} aria-label={`${r.type} in use`}>{r.max - r.free}</meter> },
            { label: 'CPU', cell: (r) => r.cpu },
            { label: 'RAM (MiB)', cell: (r) => r.ram },
            { label: 'Disk (GiB)', cell: (r) => r.disk },
          ]} />
        </div>
      ))}
      {data.data && data.data.zones.length === 0 && <p class="note">No zones registered.</p>}
    </section>
  );
}
