// The Storage Controller's limits (Eucalyptus `storage.*`), per availability zone: `storage.NAME`
// applies to every zone, `<zone>.storage.NAME` to one (as Eucalyptus's `PARTI00.storage.NAME`). The SC
// reads them from the clc (sender sc:<zone>); its mallee.conf SC_MAX_* settings are the fallback.
import { integerProperty } from '../define.js';

export const storageProperties = {
  maxVolumeSizeGb: integerProperty({
    name: 'storage.maxvolumesizeingb',
    description: 'Largest volume CreateVolume accepts, GiB',
    default: 15,
    min: 1,
    perZone: true,
    conf: { key: 'SC_MAX_VOLUME_SIZE_GB' },
  }),
  maxTotalVolumeSizeGb: integerProperty({
    name: 'storage.maxtotalvolumesizeingb',
    description: "Total size of a zone's volumes, GiB",
    default: 50,
    min: 1,
    perZone: true,
    conf: { key: 'SC_MAX_TOTAL_STORAGE_GB' },
  }),
};
