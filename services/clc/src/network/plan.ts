// The clc's reading of the networking configuration (mallee.conf VNET_*): which mode, how the
// private subnet is cut, and the public address pool.
import type { MalleeConfig } from '@mallee/config';
import { networkCount, parsePublicIps, type AddressPlan } from '@mallee/vnet';

export interface NetworkPlan extends AddressPlan {
  mode: MalleeConfig['VNET_MODE'];
  /** MANAGED modes: the clc assigns private addresses and MACs and the cc enforces groups. */
  managed: boolean;
  networks: number;
  publicIps: string[];
  autoAssign: boolean;
  region: string;
}

export function networkPlan(config: MalleeConfig): NetworkPlan {
  const plan: AddressPlan = { subnet: config.VNET_SUBNET, netmask: config.VNET_NETMASK, addrsPerNet: config.VNET_ADDRSPERNET };
  return {
    ...plan,
    mode: config.VNET_MODE,
    managed: config.VNET_MODE === 'MANAGED' || config.VNET_MODE === 'MANAGED-NOVLAN',
    networks: networkCount(plan),
    publicIps: parsePublicIps(config.VNET_PUBLICIPS),
    autoAssign: config.VNET_AUTOASSIGN === 'Y',
    region: config.REGION,
  };
}
