// Where things live in a Mallee home directory (one per host; the all-in-one keeps every daemon in one).
import { join } from 'node:path';

/** In start order. Walrus and the sc are optional in the all-in-one: started when they are built. */
export const SERVICES = ['clc', 'walrus', 'sc', 'cc', 'nc'] as const;
export type Service = (typeof SERVICES)[number];

/** The admin account the clc creates at first start (Eucalyptus's name for it). */
export const ADMIN_ACCOUNT = 'eucalyptus';

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.MALLEE_HOME && env.MALLEE_HOME !== '' ? env.MALLEE_HOME : '/var/lib/mallee';
}

export interface Home {
  dir: string;
  conf: string;
  eucarc: string;
  runDir: string;
  logDir: string;
  keysDir: string;
  adminKey: string;
  cloudKey: string;
  nodeKey: string;
  /** The sc's wire key and its Walrus credentials (the block-storage system account), from register-sc. */
  scKey: string;
  blockStorage: string;
  /** The cloud certificate (EUCALYPTUS_CERT) and its private key (Walrus decrypts image bundles with it). */
  cloudCert: string;
  cloudPrivateKey: string;
  pidFile(svc: Service): string;
  urlFile(svc: Service): string;
  logFile(svc: Service): string;
}

export function homeAt(dir: string): Home {
  const runDir = join(dir, 'run');
  const logDir = join(dir, 'log');
  const keysDir = join(dir, 'keys');
  return {
    dir,
    conf: join(dir, 'mallee.conf'),
    eucarc: join(dir, 'eucarc'),
    runDir,
    logDir,
    keysDir,
    adminKey: join(keysDir, 'admin.key'),
    cloudKey: join(keysDir, 'cloud.key'),
    nodeKey: join(keysDir, 'node.key'),
    scKey: join(keysDir, 'sc.key'),
    blockStorage: join(keysDir, 'blockstorage.json'),
    cloudCert: join(keysDir, 'cloud-cert.pem'),
    cloudPrivateKey: join(keysDir, 'cloud-pk.pem'),
    pidFile: (svc) => join(runDir, `${svc}.pid`),
    urlFile: (svc) => join(runDir, `${svc}.url`),
    logFile: (svc) => join(logDir, `${svc}.log`),
  };
}
