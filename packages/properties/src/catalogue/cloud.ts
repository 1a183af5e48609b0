// The clc's own cloud-wide settings (Eucalyptus `cloud.*` names and units).
import { integerProperty, numberProperty, stringProperty } from '../define.js';

export const cloudProperties = {
  terminatedTime: numberProperty({
    name: 'cloud.vmstate.terminated_time',
    description: 'Minutes a terminated instance stays visible (DescribeInstances) before it is purged; fractions allowed',
    default: 60,
    min: 0,
    conf: { key: 'TERMINATED_RETENTION', map: (seconds: number) => seconds / 60 },
  }),
  defaultTypeName: stringProperty({
    name: 'cloud.vmtypes.default_type_name',
    description: 'Instance type RunInstances uses when the request names none',
    default: 'm1.small',
    pattern: /^[a-z0-9][a-z0-9.-]{0,63}$/,
    patternHint: 'an instance type name such as m1.small',
  }),
  userDataMaxSizeKb: integerProperty({
    name: 'cloud.vmstate.user_data_max_size_kb',
    description: 'Largest user data (KiB, before base64) RunInstances accepts',
    default: 16,
    min: 1,
    max: 1024,
  }),
};
