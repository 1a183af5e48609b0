// The Cluster Controller's settings (Eucalyptus's per-partition `<zone>.cluster.*` properties): each cc
// reads them from the clc as `cc:<zone>` with the key the clc issued at register-cluster. An unset
// property leaves the cc host's own mallee.conf in charge (the conf key it replaces).
import { enumProperty } from '../define.js';

export const clusterProperties = {
  schedulingPolicy: enumProperty({
    name: 'cluster.schedulingpolicy',
    description: "How the zone's cc places instances on its nodes: GREEDY (first node that fits), ROUNDROBIN (rotating), POWERSAVE (pack onto busy nodes)",
    default: 'GREEDY',
    choices: ['GREEDY', 'ROUNDROBIN', 'POWERSAVE'],
    perZone: true,
    conf: { key: 'SCHEDPOLICY' },
  }),
};
