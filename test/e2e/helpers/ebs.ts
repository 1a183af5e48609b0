// What the EBS suites and the snapshot benchmark share: the clients (awscli, euca2ools) bound to a cloud,
// tgtd probes, and the test guest's volume agent (its user data: the busybox test image runs user data
// that starts with #!).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signV4 } from '@mallee/aws-protocol';
import { openDaemonDatabase } from '@mallee/store';
import { clientEnv, parseTgtTargets, repoRoot, runTool, type Cloud, type TgtTarget } from './cloud.js';

/** The IQN base of every Mallee SC (services/sc/src/exports.ts). */
const IQN_BASE = 'iqn.2010-05.org.mallee';

/** tgtd answers here (test/run-all.sh starts it with deploy/lib.sh ensure_tgt). */
export function tgtHere(): boolean {
  try {
    execFileSync('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The IQNs in tgtd that export this volume (any SC's: volume ids are unique). */
export function targetsOf(volumeId: string): string[] {
  return tgtTargets().map((t) => t.iqn).filter((iqn) => iqn.includes(`.${volumeId}.`));
}

function tgtTargets(): TgtTarget[] {
  return parseTgtTargets(execFileSync('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { encoding: 'utf8' }));
}

/** awscli and euca2ools against the cloud, as its admin (the eucarc); failures carry the daemons' logs. */
export function clients(cloud: () => Cloud) {
  const ec2 = (args: string[], json = true) => runTool('aws', ['--endpoint-url', cloud().ec2Url, '--region', cloud().region, ...(json ? ['--output', 'json'] : []), 'ec2', ...args], clientEnv(cloud().env));
  return {
    async aws(args: string[]): Promise<Record<string, unknown>> {
      const r = await ec2(args);
      if (r.code !== 0) throw new Error(`aws ec2 ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud().logs()}`);
      return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
    },
    /** The EC2 error code of a call that must fail. */
    async awsError(args: string[]): Promise<string> {
      const r = await ec2(args, false);
      if (r.code === 0) throw new Error(`aws ec2 ${args.join(' ')} should have failed`);
      return /\((\S+)\) when calling/.exec(r.stderr)?.[1] ?? r.stderr;
    },
    /** A boto3 script with `ec2` bound to the cloud (and boto3, os, json, time imported); its stdout, trimmed. */
    async boto3(code: string): Promise<string> {
      const script = `import boto3, os, json, time\nec2 = boto3.client("ec2", endpoint_url=os.environ["EC2_URL"], region_name=os.environ["AWS_DEFAULT_REGION"])\n${code}`;
      const r = await runTool('python3', ['-c', script], clientEnv(cloud().env));
      if (r.code !== 0) throw new Error(`boto3 failed: ${r.stderr}\n${cloud().logs()}`);
      return r.stdout.trim();
    },
    async euca(cmd: string, args: string[]): Promise<string> {
      const r = await runTool(join(repoRoot, '../shared/tools/euca'), [cmd, ...args], clientEnv(cloud().env));
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud().logs()}`);
      return r.stdout;
    },
  };
}

/**
 * The guest's volume agent (user data): for every hot-plugged disk whose serial is a volume id it
 * mounts the ext2 filesystem and prints the checksum of every file, or, on an empty volume, makes the
 * filesystem and writes 8 MiB of random data; at a volume's second appearance it also writes 11 MiB
 * more (1% of 1 GiB). It unmounts before saying "done", so the volume can be detached.
 */
export const VOLUME_AGENT = `#!/bin/sh
echo "mallee-vol: agent running"
while true; do
  for s in /sys/block/vd*/serial; do
    [ -f "$s" ] || continue
    dev=$(basename $(dirname $s)); ser=$(cat $s)
    case "$ser" in vol-*) ;; *) continue ;; esac
    [ -e /run/present-$dev-$ser ] && continue
    : > /run/present-$dev-$ser
    n=$(( $(cat /run/count-$ser 2>/dev/null || echo 0) + 1 )); echo $n > /run/count-$ser
    echo "mallee-vol: appeared $ser $dev $n"
    m=/mnt/$ser; mkdir -p $m
    if mount -t ext2 /dev/$dev $m 2>/dev/null; then
      for f in $m/data $m/extra; do [ -f $f ] && echo "mallee-vol: read $ser $(basename $f) $(md5sum < $f | cut -c1-32)"; done
      if [ $n -eq 2 ] && [ ! -f $m/extra ]; then
        dd if=/dev/urandom of=$m/extra bs=1M count=11 2>/dev/null; sync
        echo "mallee-vol: wrote $ser extra $(md5sum < $m/extra | cut -c1-32)"
      fi
      umount $m
    else
      mke2fs -q /dev/$dev && mount -t ext2 /dev/$dev $m && dd if=/dev/urandom of=$m/data bs=1M count=8 2>/dev/null && sync &&
        echo "mallee-vol: wrote $ser data $(md5sum < $m/data | cut -c1-32)"
      umount $m
    fi
    sync
    echo "mallee-vol: done $ser $n"
  done
  for p in /run/present-*; do
    [ -e "$p" ] || continue
    d=\${p#/run/present-}; d=\${d%%-vol-*}
    [ -e /sys/block/$d ] || rm -f $p
  done
  usleep 200000
done
`;

/** The SC's name prefix in tgtd and Walrus (made once, in its database; PostgreSQL in test:scale-out): what in a shared tgtd is this cloud's. */
export function scPrefixOf(home: string): string {
  const db = openDaemonDatabase('', join(home, 'sc.sqlite'), 'sc', { migrations: [], readonly: true });
  try {
    return db.prepare("SELECT value FROM settings WHERE name = 'prefix'").pluck().get() as string;
  } finally {
    db.close();
  }
}

/** The tgtd targets of this cloud's SC (IQNs with its prefix; other clouds' targets share tgtd), with their LUNs' backing files. */
export function scTargetsOf(home: string): { tid: number; iqn: string; backing: string[] }[] {
  const own = `${IQN_BASE}:${scPrefixOf(home)}.`;
  return tgtTargets().filter((t) => t.iqn.startsWith(own)).map(({ tid, iqn, backing }) => ({ tid, iqn, backing }));
}

/**
 * What the SC keeps in Walrus (its block-storage bucket, with its own credentials): the chunk objects and,
 * per snapshot manifest, the chunk keys it names.
 */
export async function snapshotStoreOf(cloud: Cloud): Promise<{ chunks: string[]; manifests: Map<string, string[]> }> {
  const bs = JSON.parse(readFileSync(join(cloud.home, 'keys', 'blockstorage.json'), 'utf8')) as { walrusUrl: string; bucket: string; accessKeyId: string; secretAccessKey: string };
  const get = async (key: string, query = ''): Promise<string> => {
    const url = new URL(`${bs.walrusUrl.replace(/\/$/, '')}/${bs.bucket}${key ? `/${key}` : ''}${query ? `?${query}` : ''}`);
    const s = signV4({ method: 'GET', path: url.pathname, query, headers: { host: url.host, 'x-amz-content-sha256': createHash('sha256').update('').digest('hex') }, accessKeyId: bs.accessKeyId, secretAccessKey: bs.secretAccessKey, region: cloud.region, service: 's3', doubleEncodePath: false });
    const res = await fetch(url, { headers: s.headers, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET ${url.pathname}: ${res.status} ${text.slice(0, 200)}`);
    return text;
  };
  const keys: string[] = [];
  for (let token: string | undefined, first = true; first || token; first = false) {
    const page = await get('', `${token ? `continuation-token=${encodeURIComponent(token)}&` : ''}list-type=2`);
    keys.push(...[...page.matchAll(/<Key>([^<]+)<\/Key>/g)].map((k) => k[1]!));
    token = /<IsTruncated>true<\/IsTruncated>/.test(page) ? /<NextContinuationToken>([^<]+)<\/NextContinuationToken>/.exec(page)?.[1] : undefined;
  }
  const manifests = new Map<string, string[]>();
  for (const key of keys.filter((k) => k.includes('/manifests/'))) {
    const man = JSON.parse(await get(key)) as { chunkPrefix: string; chunks: [number, string][] };
    manifests.set(/(snap-[0-9a-f]+)\.json$/.exec(key)?.[1] ?? key, man.chunks.map(([, h]) => `${man.chunkPrefix}${h}`));
  }
  return { chunks: keys.filter((k) => k.includes('/chunks/')), manifests };
}
