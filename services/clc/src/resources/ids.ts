// Resource ids as EC2 and Eucalyptus spell them (`sg-1a2b3c4d`, `emi-…`), and the checks that tell a
// malformed id from an unknown one.
import { randomBytes } from 'node:crypto';
import { Ec2Error } from '@mallee/aws-protocol';

/** prefix + 8 lowercase hex digits. */
export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Short (8) and long (17) hex forms are both well-formed, as in EC2. */
const HEX_SUFFIX = '(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{17})';
export const GROUP_ID = new RegExp(`^sg-${HEX_SUFFIX}$`);
export const IMAGE_ID = new RegExp(`^(?:ami|emi|eki|eri|aki|ari)-${HEX_SUFFIX}$`);
export const INSTANCE_ID = new RegExp(`^i-${HEX_SUFFIX}$`);

export const imagePrefixFor = { machine: 'emi', kernel: 'eki', ramdisk: 'eri' } as const;

export function malformedImageId(id: string): Ec2Error {
  return new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-...")`);
}
export function malformedGroupId(id: string): Ec2Error {
  return new Ec2Error('InvalidGroupId.Malformed', `Invalid id: "${id}" (expecting "sg-...")`);
}
