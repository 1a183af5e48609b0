// The clc's own EC2 actions (instances, zones, instance types); resources/ adds key pairs, groups,
// images and tags.
import type { Ec2Action } from '@mallee/aws-protocol';
import type { Clc } from './context.js';
import { describeInstancesAction } from './describe-instances.js';
import { instanceStatusActions } from './instance-status.js';
import { instanceTypeActions } from './instance-types.js';
import { lifecycleActions } from './lifecycle.js';
import { runInstancesAction } from './run-instances.js';
import { zoneActions } from './zones.js';

export type { Clc } from './context.js';

export function coreActions(clc: Clc): Ec2Action[] {
  return [
    ...zoneActions(clc),
    runInstancesAction(clc),
    describeInstancesAction(clc),
    ...lifecycleActions(clc),
    ...instanceStatusActions(clc),
    ...instanceTypeActions(clc),
  ] as Ec2Action[];
}
