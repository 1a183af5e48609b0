// The real clients the suites drive a cloud with — awscli v1, boto3, euca2ools 3.4 — and libvirt's
// own view of the guests (virsh), for suites that boot real guests.
import { join } from 'node:path';
import { clientEnv, eventually, libvirtDomains, repoRoot, runTool, type Cloud } from './cloud.js';

/** `aws --output json …` against the cloud; fails with the daemons' log tails. */
export async function awsCli(cloud: Cloud, args: string[]): Promise<Record<string, unknown>> {
  const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, '--output', 'json', ...args], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`aws ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
}

/** An awscli call expected to fail: its exit code and stderr (which names the EC2 error code). */
export async function awsCliError(cloud: Cloud, args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, '--output', 'json', ...args], clientEnv(cloud.env));
  return { code: r.code, stderr: r.stderr };
}

/** A euca2ools 3.4 command (../shared/tools/euca beside the repository); its stdout. */
export async function euca(cloud: Cloud, cmd: string, args: string[]): Promise<string> {
  const r = await eucaResult(cloud, cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout;
}

export function eucaResult(cloud: Cloud, cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return runTool(join(repoRoot, '../shared/tools/euca'), [cmd, ...args], clientEnv(cloud.env));
}

/**
 * Runs Python with boto3 (the pyenv python3) where `ec2 = boto3.client("ec2")` is defined (endpoint from the
 * eucarc's AWS_ENDPOINT_URL_EC2); the script's last stdout line must be JSON (print(json.dumps(...))).
 */
export async function boto3(cloud: Cloud, body: string): Promise<unknown> {
  const code = `import boto3, json, sys\nec2 = boto3.client("ec2")\n${body}\n`;
  const r = await runTool('python3', ['-c', code], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`boto3 script exited ${r.code}: ${r.stderr}\n${body}\n${cloud.logs()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as unknown;
}

/** The guest's serial console as awscli's get-console-output returns it (decoded). */
export async function consoleOf(cloud: Cloud, id: string): Promise<string> {
  return String((await awsCli(cloud, ['ec2', 'get-console-output', '--instance-id', id])).Output ?? '');
}

/** Wait for a line on the guest's console; returns the whole console then. */
export function consoleShows(cloud: Cloud, id: string, marker: string, timeoutMs = 300_000): Promise<string> {
  return eventually(`"${marker}" on the console of ${id}`, async () => {
    const text = await consoleOf(cloud, id);
    return text.includes(marker) ? text : undefined;
  }, timeoutMs);
}

/** The instances of a run-instances / describe-instances answer (awscli or boto3 shape). */
export function instancesIn(answer: unknown): { InstanceId: string; State: { Name: string }; Placement?: { AvailabilityZone?: string } }[] {
  const a = answer as { Instances?: unknown[]; Reservations?: { Instances: unknown[] }[] };
  return (a.Instances ?? (a.Reservations ?? []).flatMap((r) => r.Instances)) as ReturnType<typeof instancesIn>;
}

/** Wait until none of `ids` has a libvirt domain any more. */
export async function domainsGone(ids: string[], timeoutMs = 180_000): Promise<void> {
  await eventually(`domains of ${ids.join(' ')} gone`, async () => {
    const left = await libvirtDomains();
    return ids.every((id) => !left.includes(id)) ? true : undefined;
  }, timeoutMs);
}

/** Terminate with awscli and wait until the libvirt domains are gone. */
export async function terminateAndWaitGone(cloud: Cloud, ids: string[], timeoutMs = 180_000): Promise<void> {
  if (ids.length === 0) return;
  await awsCli(cloud, ['ec2', 'terminate-instances', '--instance-ids', ...ids]);
  await domainsGone(ids, timeoutMs);
}

/** libvirt's domain id of each running guest: it changes whenever a guest's QEMU is started again. */
export async function domainIds(ids: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const id of ids) out.set(id, (await virsh(['domid', id])).trim());
  return out;
}

/** `virsh -c qemu:///system …`; stdout, or an error with stderr. */
export async function virsh(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await runTool('virsh', ['-c', 'qemu:///system', ...args], process.env, timeoutMs);
  if (r.code !== 0) throw new Error(`virsh ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
