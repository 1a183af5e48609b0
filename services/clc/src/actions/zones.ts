// DescribeRegions (this cloud's one region), DescribeAvailabilityZones (one zone per registered
// cluster; the admin's `verbose` adds Eucalyptus's free/max listing per instance type and the state
// and last contact of each component serving the zone) and
// DescribeAccountAttributes.
import { z } from 'zod';
import { defineEc2Action, Ec2Error, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters } from '../resources/index.js';
import { listInstanceTypes } from '../instance-types.js';
import type { ServiceStatus } from '../services.js';
import { list, VERBOSE, type Clc } from './context.js';

export function describeRegions(clc: Clc, names: string[], filters: { Name: string; Value: string[] }[]): Record<string, unknown> {
  const region = { regionName: clc.config.REGION, regionEndpoint: `${clc.url().replace(/\/$/, '')}/services/compute`, optInStatus: 'opt-in-not-required' };
  for (const n of names) if (n !== region.regionName) throw new Ec2Error('InvalidParameterValue', `Invalid region: ${n}`);
  const regions = applyFilters([region], filters, { 'region-name': (r) => r.regionName, endpoint: (r) => r.regionEndpoint, 'opt-in-status': (r) => r.optInStatus });
  return { regionInfo: regions };
}

const pad = (n: number, width: number) => String(n).padStart(width);

/** Eucalyptus's verbose rows: "|- vm types" header, then "|- m1.small  0004 / 0004   1    512     5". */
function verboseRows(clc: Clc, zone: string): Record<string, unknown>[] {
  const availability = new Map(clc.clusters.availability(zone).map((a) => [a.name, a]));
  const rows: Record<string, unknown>[] = [{ zoneName: '|- vm types', zoneState: 'free / max   cpu   ram  disk', regionName: clc.config.REGION, messageSet: [] }];
  for (const t of listInstanceTypes(clc.db)) {
    const a = availability.get(t.name) ?? { available: 0, max: 0 };
    const free = String(Math.max(0, a.available)).padStart(4, '0');
    const max = String(a.max).padStart(4, '0');
    rows.push({ zoneName: `|- ${t.name}`, zoneState: `${free} / ${max} ${pad(t.cpu, 3)} ${pad(t.memoryMiB, 6)} ${pad(t.diskGiB, 5)}`, regionName: clc.config.REGION, messageSet: [] });
  }
  return rows;
}

/** The zone's components and the cloud-wide ones it depends on: "|- nc node1  ENABLED  <last contact>  <detail>". */
function serviceRows(clc: Clc, zone: string, services: ServiceStatus[]): Record<string, unknown>[] {
  const mine = services.filter((s) => s.partition === zone || s.type === 'clc' || s.type === 'walrus');
  return [
    { zoneName: '|- services', zoneState: 'state  last contact  detail', regionName: clc.config.REGION, messageSet: [] },
    ...mine.map((s) => ({
      zoneName: `|- ${s.type} ${s.name}`,
      zoneState: [s.state, s.lastContact ?? 'never', s.detail ?? ''].join('  ').trim(),
      regionName: clc.config.REGION,
      messageSet: s.detail ? [{ message: s.detail }] : [],
    })),
  ];
}

export async function describeAvailabilityZones(clc: Clc, principal: Principal, names: string[], filters: { Name: string; Value: string[] }[]): Promise<Record<string, unknown>> {
  const verbose = names.includes(VERBOSE) && principal.isAdmin;
  const wanted = names.filter((n) => n !== VERBOSE);
  const clusters = clc.clusters.list();
  for (const n of wanted) if (!clusters.some((c) => c.name === n)) throw new Ec2Error('InvalidParameterValue', `Invalid availability zone: [${n}]`);
  const zones = clusters
    .filter((c) => !wanted.length || wanted.includes(c.name))
    .map((c) => ({ cluster: c, zoneName: c.name, zoneState: c.state === 'ENABLED' ? 'available' : 'unavailable', regionName: clc.config.REGION }));
  const shown = applyFilters(zones, filters, {
    'zone-name': (z) => z.zoneName, state: (z) => z.zoneState, 'region-name': (z) => z.regionName, message: () => [],
  });
  const out: Record<string, unknown>[] = [];
  const services = verbose && shown.length ? await clc.services() : [];
  for (const z of shown) {
    if (!verbose) {
      out.push({ zoneName: z.zoneName, zoneState: z.zoneState, regionName: z.regionName, messageSet: [] });
      continue;
    }
    // As Eucalyptus's verbose listing: the zone's cc host and its service name in place of the state.
    const host = new URL(z.cluster.url).hostname;
    out.push({ zoneName: z.zoneName, zoneState: `${host} arn:euca:eucalyptus:${z.zoneName}:cluster:${z.zoneName}/`, regionName: z.regionName, messageSet: z.zoneState === 'available' ? [] : [{ message: `cluster ${z.cluster.state}${z.cluster.detail ? `: ${z.cluster.detail}` : ''}` }] });
    out.push(...verboseRows(clc, z.zoneName), ...serviceRows(clc, z.zoneName, services));
  }
  return { availabilityZoneInfo: out };
}

export function describeAccountAttributes(clc: Clc, names: string[]): Record<string, unknown> {
  const capacity = clc.clusters.list().reduce((n, c) => n + Math.max(0, ...clc.clusters.availability(c.name).map((a) => a.max)), 0);
  const attributes: Record<string, string[]> = {
    'supported-platforms': ['EC2'],
    'default-vpc': ['none'],
    'max-instances': [String(Math.max(capacity, 20))],
    'vpc-max-security-groups-per-interface': ['5'],
    'max-elastic-ips': ['5'],
    'vpc-max-elastic-ips': ['5'],
  };
  for (const n of names) if (!(n in attributes)) throw new Ec2Error('InvalidParameterValue', `Value (${n}) for parameter AttributeName is invalid. Unknown attribute.`);
  return {
    accountAttributeSet: Object.entries(attributes)
      .filter(([name]) => !names.length || names.includes(name))
      .map(([name, values]) => ({ attributeName: name, attributeValueSet: values.map((v) => ({ attributeValue: v })) })),
  };
}

export const zoneActions = (clc: Clc) => [
  defineEc2Action('DescribeRegions', z.object({ RegionName: list(z.string()), Filter: q.filters(), AllRegions: z.string().optional() }),
    (input) => describeRegions(clc, input.RegionName, input.Filter)),
  defineEc2Action('DescribeAvailabilityZones', z.object({ ZoneName: list(z.string()), ZoneId: list(z.string()), Filter: q.filters(), AllAvailabilityZones: z.string().optional() }),
    (input, { principal }) => describeAvailabilityZones(clc, principal, input.ZoneName, input.Filter)),
  defineEc2Action('DescribeAccountAttributes', z.object({ AttributeName: list(z.string()) }),
    (input) => describeAccountAttributes(clc, input.AttributeName)),
];
