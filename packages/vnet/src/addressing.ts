// Address arithmetic of MANAGED networking, as Eucalyptus's vnetwork.c lays it out: VNET_SUBNET /
// VNET_NETMASK is cut into networks of VNET_ADDRSPERNET addresses; network n (its VLAN tag or VXLAN
// VNI) starts at subnet + n × addrsPerNet, .0 is the network, .1 the CC (gateway, DHCP, metadata),
// the last the broadcast, and instances get the addresses in between.

export function ipToInt(ip: string): number {
  const parts = ip.trim().split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function isIpv4(s: string): boolean {
  try {
    ipToInt(s);
    return true;
  } catch {
    return false;
  }
}

/** Prefix length of a dotted netmask (255.255.0.0 → 16); throws on a non-contiguous mask. */
export function prefixLength(netmask: string): number {
  const m = ipToInt(netmask);
  let len = 0;
  while (len < 32 && (m & (0x80000000 >>> len)) !== 0) len++;
  if (len < 32 && (m << len) >>> 0 !== 0) throw new Error(`not a contiguous netmask: ${netmask}`);
  return len;
}

export interface AddressPlan {
  subnet: string;
  netmask: string;
  addrsPerNet: number;
}

/** The lowest network index handed out (0 and 1 are reserved, as Eucalyptus starts its VLANs at 2). */
export const MIN_NETWORK_INDEX = 2;

/** How many networks the subnet holds (indices MIN_NETWORK_INDEX … count-1), capped at 4095 (802.1Q). */
export function networkCount(plan: AddressPlan): number {
  const size = 2 ** (32 - prefixLength(plan.netmask));
  return Math.min(4096, Math.floor(size / plan.addrsPerNet));
}

export interface PrivateNetwork {
  index: number;
  /** Network address and prefix length, e.g. 172.31.0.64/27. */
  cidr: string;
  network: string;
  prefix: number;
  netmask: string;
  gateway: string;
  broadcast: string;
  /** First and last instance addresses. */
  firstHost: string;
  lastHost: string;
}

export function privateNetwork(plan: AddressPlan, index: number): PrivateNetwork {
  const base = ((ipToInt(plan.subnet) & ipToInt(plan.netmask)) >>> 0) + index * plan.addrsPerNet;
  const prefix = 32 - Math.log2(plan.addrsPerNet);
  return {
    index,
    cidr: `${intToIp(base)}/${prefix}`,
    network: intToIp(base),
    prefix,
    netmask: intToIp((0xffffffff << (32 - prefix)) >>> 0),
    gateway: intToIp(base + 1),
    broadcast: intToIp(base + plan.addrsPerNet - 1),
    firstHost: intToIp(base + 2),
    lastHost: intToIp(base + plan.addrsPerNet - 2),
  };
}

/** Every instance address of a network, lowest first. */
export function hostAddresses(net: PrivateNetwork): string[] {
  const out: string[] = [];
  for (let n = ipToInt(net.firstHost); n <= ipToInt(net.lastHost); n++) out.push(intToIp(n));
  return out;
}

/** The whole managed subnet as a CIDR (VNET_SUBNET/VNET_NETMASK). */
export function subnetCidr(plan: AddressPlan): string {
  return `${intToIp((ipToInt(plan.subnet) & ipToInt(plan.netmask)) >>> 0)}/${prefixLength(plan.netmask)}`;
}

/** Eucalyptus's instance MAC: d0:0d followed by the four bytes of the private address. */
export function macForAddress(ip: string): string {
  const n = ipToInt(ip);
  return ['d0', '0d', ...[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The host part of a private DNS name (what DHCP gives the guest as its hostname): ip-172-31-0-34. */
export function privateHostName(ip: string): string {
  return `ip-${ip.replace(/\./g, '-')}`;
}

/** The domain of a region's private DNS names, which the cc's dnsmasq answers for: <region>.compute.internal. */
export function privateDnsDomain(region: string): string {
  return `${region}.compute.internal`;
}

/**
 * EC2's private DNS name: ip-172-31-0-34.<region>.compute.internal — DescribeInstances' privateDnsName, the
 * metadata's hostname and local-hostname, and the name the cc's dnsmasq resolves for guests.
 */
export function privateDnsName(ip: string, region: string): string {
  return `${privateHostName(ip)}.${privateDnsDomain(region)}`;
}

/** VNET_PUBLICIPS: addresses and ranges separated by spaces or commas ("10.0.0.5 10.0.0.10-10.0.0.20"). */
export function parsePublicIps(spec: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const item of spec.split(/[\s,]+/).filter(Boolean)) {
    const [from, to] = item.split('-');
    const a = ipToInt(from!);
    const b = to === undefined ? a : ipToInt(to);
    if (b < a) throw new Error(`VNET_PUBLICIPS: range ${item} runs backwards`);
    if (b - a > 65535) throw new Error(`VNET_PUBLICIPS: range ${item} is larger than 65536 addresses`);
    for (let n = a; n <= b; n++) {
      const ip = intToIp(n);
      if (seen.has(ip)) continue;
      out.push(ip);
      seen.add(ip);
    }
  }
  return out;
}
