// mallee.conf: one file per host in eucalyptus.conf style (KEY="value", # comments), validated with
// zod; MALLEE_<KEY> environment variables override the file, and explicit overrides win over both.
import { readFileSync, existsSync } from 'node:fs';
import { z } from 'zod';

const port = z.coerce.number().int().min(1).max(65535);
const positiveInt = z.coerce.number().int().positive();
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'an IPv4 address');

export const configSchema = z.object({
  MALLEE_HOME: z.string().default('/var/lib/mallee'),
  CLC_PORT: port.default(8773),
  CC_PORT: port.default(8774),
  NC_PORT: port.default(8775),
  WALRUS_PORT: port.default(8776),
  SC_PORT: port.default(8777),
  BIND_ADDRESS: z.string().default('127.0.0.1'),
  /**
   * The clc's URL as the daemons of this host reach it (Walrus, the sc and the cc read their cloud
   * properties there; the cc and Walrus may run on another host than the clc). Default:
   * http://<BIND_ADDRESS, 127.0.0.1 for 0.0.0.0>:CLC_PORT — the clc on this host (clcUrlOf).
   */
  CLC_URL: z.string().default(''),
  /** Region name reported by DescribeRegions and used in credentials. */
  REGION: z.string().default('mallee'),
  /** Availability zone (= cluster name) served by this host's cc. */
  ZONE: z.string().default('mallee-1a'),
  /** Seconds between a controller's polls of the component below it. */
  POLL_INTERVAL: z.coerce.number().positive().default(2),
  /** Seconds a terminated instance stays visible before it is purged. */
  TERMINATED_RETENTION: z.coerce.number().nonnegative().default(3600),
  MAX_CORES: z.coerce.number().int().nonnegative().default(0),
  MAX_MEM: z.coerce.number().int().nonnegative().default(0),
  MAX_DISK: z.coerce.number().int().nonnegative().default(0),
  SCHEDPOLICY: z.enum(['GREEDY', 'ROUNDROBIN', 'POWERSAVE']).default('GREEDY'),
  /**
   * Live migration (the cc's): the destination node's libvirtd as the source node's libvirtd reaches it, {host}
   * the destination's registered address — qemu+tcp (libvirtd listen_tcp, on a private link only), qemu+tls
   * (listen_tls with certificates) or qemu+ssh://root@{host}/system.
   */
  MIGRATE_LIBVIRT_URI: z.string().default('qemu+tcp://{host}/system')
    .refine((u) => u.includes('{host}') && /^qemu(\+[a-z]+)?:\/\//.test(u), 'a libvirt URI such as qemu+tls://{host}/system, with {host} for the destination node'),
  HYPERVISOR: z.enum(['simulated', 'libvirt', 'kvm', 'qemu']).default('libvirt'),
  /** Simulated hypervisor: milliseconds from ncRunInstance until the guest is running. */
  SIM_BOOT_DELAY: z.coerce.number().int().nonnegative().default(500),
  /** Simulated hypervisor: milliseconds its start-up takes (as libvirt's KVM probe does; tests of a slow NC start). */
  SIM_INIT_DELAY: z.coerce.number().int().nonnegative().default(0),
  /** Simulated hypervisor: physical cores and memory (MiB) it pretends to have. */
  SIM_CORES: positiveInt.default(4),
  SIM_MEM: positiveInt.default(8192),
  SIM_DISK: positiveInt.default(200),
  INSTANCE_PATH: z.string().default('/var/lib/mallee/instances'),
  /** The libvirtd the NC drives (a node in a network namespace has its own: qemu:///system?socket=…). */
  LIBVIRT_URI: z.string().default('qemu:///system'),
  /** MiB the NC's image cache may hold (Eucalyptus NC_CACHE_SIZE); least recently used unused images go first. */
  NC_CACHE_SIZE: z.coerce.number().int().nonnegative().default(99999),
  /** USERMODE: QEMU user-mode networking (outbound only; no groups enforced, no public IPs) — the all-in-one's default. */
  VNET_MODE: z.enum(['MANAGED', 'MANAGED-NOVLAN', 'SYSTEM', 'USERMODE']).default('MANAGED'),
  VNET_ENCAP: z.enum(['vlan', 'vxlan']).default('vxlan'),
  VNET_SUBNET: ipv4.default('172.31.0.0'),
  VNET_NETMASK: ipv4.default('255.255.0.0'),
  VNET_ADDRSPERNET: positiveInt.default(32).refine((n) => (n & (n - 1)) === 0 && n >= 16, 'a power of two, at least 16'),
  VNET_PUBLICIPS: z.string().default(''),
  VNET_PUBINTERFACE: z.string().default('eth0'),
  VNET_PRIVINTERFACE: z.string().default('eth1'),
  VNET_BRIDGE: z.string().default(''),
  VNET_DNS: z.string().default(''),
  /** Prefix of every bridge, tunnel device and iptables/ebtables chain Mallee creates (at most 5 characters). */
  VNET_PREFIX: z.string().regex(/^[a-z][a-z0-9]{0,4}$/, '1-5 lowercase letters and digits, starting with a letter').default('mln'),
  /** Y: every instance gets a public address from VNET_PUBLICIPS at launch (unless AddressingType=private). */
  VNET_AUTOASSIGN: z.enum(['Y', 'N']).default('Y'),
  /** Port of the CC's metadata service; guests reach it as 169.254.169.254:80 (DNAT on the CC). */
  METADATA_PORT: port.default(8779),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Walrus quotas (Eucalyptus walrus.storagemaxbucketsperaccount / storagemaxbucketsizeinmb / …); 0 = unlimited. */
  /** Seconds between the console's readings of every daemon's /metrics (its plots keep an hour's worth at 10 s). */
  CONSOLE_METRICS_INTERVAL: positiveInt.default(10),
  WALRUS_MAX_BUCKETS_PER_ACCOUNT: z.coerce.number().int().nonnegative().default(100),
  WALRUS_MAX_BUCKET_SIZE_MB: z.coerce.number().int().nonnegative().default(0),
  WALRUS_MAX_ACCOUNT_STORAGE_MB: z.coerce.number().int().nonnegative().default(0),
  /**
   * postgres://user[:password]@host[:port]/database: the clc, Walrus and the sc keep their state there
   * (each daemon in its own schema: clc, walrus, sc) instead of <home>/<daemon>.sqlite. Empty = SQLite.
   */
  DB_URL: z.string().regex(/^(postgres(ql)?:\/\/.+)?$/, 'empty, or a postgres:// URL').default(''),
  /** Where Walrus keeps object bytes: files under <home>/walrus (fs), or an S3 store such as Ceph's radosgw (s3). */
  WALRUS_BACKEND: z.enum(['fs', 's3']).default('fs'),
  /** WALRUS_BACKEND=s3: the endpoint (radosgw), its keys and the one bucket all Walrus front ends share. */
  WALRUS_S3_ENDPOINT: z.string().default(''),
  WALRUS_S3_ACCESS_KEY: z.string().default(''),
  WALRUS_S3_SECRET_KEY: z.string().default(''),
  WALRUS_S3_BUCKET: z.string().default('mallee-walrus'),
  /**
   * Storage Controller (sc): volumes as sparse files under <home>/sc/volumes, LVM logical volumes in SC_LVM_VG
   * (both exported over iSCSI), or RBD images in the Ceph pool SC_CEPH_POOL (nodes open them through librbd).
   */
  SC_BACKEND: z.enum(['file', 'lvm', 'ceph-rbd']).default('file'),
  SC_LVM_VG: z.string().default('mallee'),
  /** SC_BACKEND=ceph-rbd: the cluster's ceph.conf, the pool, and the cephx user (its keyring) the SC and the nodes' guests use. */
  SC_CEPH_CONF: z.string().default('/etc/ceph/ceph.conf'),
  SC_CEPH_POOL: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('rbd'),
  SC_CEPH_USER: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('mallee'),
  /** Default: /etc/ceph/ceph.client.<SC_CEPH_USER>.keyring. */
  SC_CEPH_KEYRING: z.string().default(''),
  /** The iSCSI portal NCs connect to (this host's address as the nodes reach it) and tgtd's port. */
  SC_ISCSI_ADDRESS: z.string().default(''),
  SC_ISCSI_PORT: port.default(3260),
  /** tgtd's management port (`tgtd -C N`, `tgtadm -C N`): 0, the default tgtd; another for a host running several. */
  SC_TGT_CONTROL_PORT: z.coerce.number().int().nonnegative().max(65535).default(0),
  /** Eucalyptus storage.maxvolumesizeingb / storage.maxtotalvolumesizeingb (0 = unlimited). */
  SC_MAX_VOLUME_SIZE_GB: z.coerce.number().int().nonnegative().default(15),
  SC_MAX_TOTAL_STORAGE_GB: z.coerce.number().int().nonnegative().default(50),
  /** Snapshot chunk size in MiB (content-addressed objects in Walrus; only changed, non-zero chunks are uploaded). */
  SC_CHUNK_MB: z.coerce.number().int().positive().max(64).default(1),
});

export type MalleeConfig = z.infer<typeof configSchema>;
export type ConfigKey = keyof MalleeConfig;
export const CONFIG_KEYS = Object.keys(configSchema.shape) as ConfigKey[];

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parse eucalyptus.conf-style text: `KEY="value"`, `KEY=value`, `export KEY=…`, `#` comments. */
export function parseConfText(text: string, source = 'mallee.conf'): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new ConfigError(`${source}:${i + 1}: expected KEY="value", got: ${line}`);
    let value = m[2]!.trim();
    const quoted = /^"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$/.exec(value) ?? /^'([^']*)'\s*(?:#.*)?$/.exec(value);
    if (quoted) value = quoted[1]!.replace(/\\(.)/g, '$1');
    else value = value.replace(/\s+#.*$/, '');
    out[m[1]!] = value;
  });
  return out;
}

export interface LoadOptions {
  /** Path of mallee.conf; a missing file means all defaults. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Partial<Record<ConfigKey, string | number>>;
}

/** Load and validate configuration: defaults < file < MALLEE_* env < overrides. */
export function loadConfig(opts: LoadOptions = {}): MalleeConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.MALLEE_CONF;
  const raw: Record<string, unknown> = {};
  if (file && existsSync(file)) Object.assign(raw, parseConfText(readFileSync(file, 'utf8'), file));
  for (const key of CONFIG_KEYS) {
    const v = key === 'MALLEE_HOME' ? env.MALLEE_HOME : env[`MALLEE_${key}`];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) if (v !== undefined) raw[k] = String(v);
  for (const k of Object.keys(raw)) if (raw[k] === '') delete raw[k];
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const msgs = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message} (got ${JSON.stringify(raw[String(i.path[0])])})`);
    throw new ConfigError(`invalid configuration${file ? ` in ${file}` : ''}:\n  ${msgs.join('\n  ')}`);
  }
  return parsed.data;
}

/** The clc's URL for daemons of this host: CLC_URL, else the clc on this host (BIND_ADDRESS:CLC_PORT). */
export function clcUrlOf(config: Pick<MalleeConfig, 'CLC_URL' | 'BIND_ADDRESS' | 'CLC_PORT'>): string {
  if (config.CLC_URL) return config.CLC_URL.replace(/\/+$/, '');
  const host = config.BIND_ADDRESS === '0.0.0.0' || config.BIND_ADDRESS === '' ? '127.0.0.1' : config.BIND_ADDRESS === '::' ? '[::1]' : config.BIND_ADDRESS;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${config.CLC_PORT}`;
}

/** Render a config back to mallee.conf text (used by `mallee up` to write a host's file). */
export function renderConf(values: Partial<Record<ConfigKey, string | number>>, header = ''): string {
  const lines = header ? header.split('\n').map((l) => `# ${l}`) : [];
  for (const [k, v] of Object.entries(values)) if (v !== undefined) lines.push(`${k}="${String(v).replace(/(["\\])/g, '\\$1')}"`);
  return lines.join('\n') + '\n';
}
export * from './daemon-main.js';
