// DescribeInstanceTypes in two shapes: Eucalyptus's extension (API versions before 2016-11-15,
// what euca2ools sends: instanceTypeDetails with cpu/memory/disk and, with Availability=true,
// free/max per zone) and AWS's (2016-11-15: instanceTypeSet with vCpuInfo, memoryInfo, …).
// ModifyInstanceTypeAttribute lets the cloud admin resize a type (euca-modify-instance-type).
import { z } from 'zod';
import { defineEc2Action, Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters } from '../resources/index.js';
import { findInstanceType, listInstanceTypes, resetInstanceType, updateInstanceType, type InstanceType } from '../instance-types.js';
import { list, unauthorized, type Clc } from './context.js';

/** The API version from which DescribeInstanceTypes has AWS's shape. */
export const AWS_INSTANCE_TYPES_VERSION = '2016-11-15';

function selectTypes(clc: Clc, names: string[]): InstanceType[] {
  const all = listInstanceTypes(clc.db);
  const unknown = names.filter((n) => !all.some((t) => t.name === n));
  if (unknown.length) throw new Ec2Error('InvalidInstanceType', `The following supplied instance types do not exist: [${unknown.join(', ')}]`);
  return names.length ? all.filter((t) => names.includes(t.name)) : all;
}

function eucalyptusShape(clc: Clc, types: InstanceType[], withAvailability: boolean): Record<string, unknown> {
  const zones = clc.clusters.list().map((c) => ({ name: c.name, availability: new Map(clc.clusters.availability(c.name).map((a) => [a.name, a])) }));
  return {
    instanceTypeDetails: types.map((t) => ({
      name: t.name, cpu: t.cpu, memory: t.memoryMiB, disk: t.diskGiB, networkInterfaces: 1,
      availability: withAvailability
        ? zones.map((z) => {
          const a = z.availability.get(t.name);
          return { zoneName: z.name, available: Math.max(0, a?.available ?? 0), max: a?.max ?? 0 };
        })
        : undefined,
    })),
  };
}

function awsShape(types: InstanceType[]): Record<string, unknown>[] {
  return types.map((t) => ({
    instanceType: t.name,
    currentGeneration: false,
    freeTierEligible: false,
    supportedUsageClasses: ['on-demand'],
    supportedRootDeviceTypes: ['instance-store'],
    supportedVirtualizationTypes: ['paravirtual', 'hvm'],
    bareMetal: false,
    hypervisor: 'xen',
    processorInfo: { supportedArchitectures: ['i386', 'x86_64'] },
    vCpuInfo: { defaultVCpus: t.cpu, defaultCores: t.cpu, defaultThreadsPerCore: 1 },
    memoryInfo: { sizeInMiB: t.memoryMiB },
    instanceStorageSupported: t.diskGiB > 0,
    instanceStorageInfo: t.diskGiB > 0 ? { totalSizeInGB: t.diskGiB, disks: [{ sizeInGB: t.diskGiB, count: 1, type: 'hdd' }] } : undefined,
    networkInfo: { networkPerformance: 'Moderate', maximumNetworkInterfaces: 1, ipv4AddressesPerInterface: 1, ipv6Supported: false },
  }));
}

const AWS_FILTERS: Record<string, (t: Record<string, unknown>) => unknown> = {
  'instance-type': (t) => t.instanceType,
  'vcpu-info.default-vcpus': (t) => (t.vCpuInfo as { defaultVCpus: number }).defaultVCpus,
  'memory-info.size-in-mib': (t) => (t.memoryInfo as { sizeInMiB: number }).sizeInMiB,
  'instance-storage-info.total-size-in-gb': (t) => (t.instanceStorageInfo as { totalSizeInGB: number } | undefined)?.totalSizeInGB,
  'current-generation': (t) => t.currentGeneration,
};

const describeShape = z.object({ InstanceType: list(z.string()), Availability: q.bool().optional(), Filter: q.filters(), MaxResults: q.int().optional(), NextToken: z.string().optional() });

export function describeInstanceTypes(clc: Clc, apiVersion: string, input: z.infer<typeof describeShape>): Record<string, unknown> {
  const types = selectTypes(clc, input.InstanceType);
  if (apiVersion >= AWS_INSTANCE_TYPES_VERSION) return { instanceTypeSet: applyFilters(awsShape(types), input.Filter, AWS_FILTERS) };
  return eucalyptusShape(clc, types, input.Availability ?? false);
}

const positive = (param: string, v: number | undefined) => {
  if (v !== undefined && v < 1) throw errors.invalidValue(param, v, `${param} must be a positive integer.`);
  return v;
};

const modifyShape = z.object({ Name: z.string().optional(), Cpu: q.int().optional(), Memory: q.int().optional(), Disk: q.int().optional(), Reset: q.bool().optional() });

export function modifyInstanceType(clc: Clc, principal: Principal, input: z.infer<typeof modifyShape>): Record<string, unknown> {
  if (!principal.isAdmin) throw unauthorized();
  if (!input.Name) throw errors.missing('Name');
  if (!findInstanceType(clc.db, input.Name)) throw new Ec2Error('InvalidParameterValue', `Invalid value '${input.Name}' for Name: no such instance type.`);
  if (input.Disk !== undefined && input.Disk < 0) throw errors.invalidValue('Disk', input.Disk, 'Disk must not be negative.');
  const t = input.Reset
    ? resetInstanceType(clc.db, input.Name)
    : updateInstanceType(clc.db, input.Name, { cpu: positive('Cpu', input.Cpu), memoryMiB: positive('Memory', input.Memory), diskGiB: input.Disk });
  return { instanceType: { name: t.name, cpu: t.cpu, memory: t.memoryMiB, disk: t.diskGiB, networkInterfaces: 1 } };
}

export const instanceTypeActions = (clc: Clc) => [
  defineEc2Action('DescribeInstanceTypes', describeShape, (input, { apiVersion }) => describeInstanceTypes(clc, apiVersion, input)),
  defineEc2Action('ModifyInstanceTypeAttribute', modifyShape, (input, { principal }) => modifyInstanceType(clc, principal, input)),
];
