import { describe, it, expect } from 'vitest';
import { parseConfText, loadConfig, ConfigError, renderConf } from '../src/index.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('mallee.conf', () => {
  it('parses eucalyptus.conf style lines with quotes, comments and export', () => {
    const got = parseConfText('# a comment\nCC_PORT="9000"\n  export MAX_CORES=4 # trailing\nVNET_PUBLICIPS="10.0.0.1-10.0.0.9 10.0.1.1"\nQ=\'x y\'\n');
    expect(got).toEqual({ CC_PORT: '9000', MAX_CORES: '4', VNET_PUBLICIPS: '10.0.0.1-10.0.0.9 10.0.1.1', Q: 'x y' });
  });

  it('reports the line of a malformed entry', () => {
    expect(() => parseConfText('CC_PORT="1"\nthis is not a setting\n', 'x.conf')).toThrow(/x\.conf:2/);
  });

  it('layers defaults < file < MALLEE_ env < overrides and validates', () => {
    const dir = mkdtempSync(join(tmpdir(), 'conf-'));
    const file = join(dir, 'mallee.conf');
    writeFileSync(file, 'CC_PORT="9100"\nMAX_CORES="2"\nSCHEDPOLICY="ROUNDROBIN"\n');
    const cfg = loadConfig({ file, env: { MALLEE_MAX_CORES: '8' }, overrides: { SCHEDPOLICY: 'POWERSAVE' } });
    expect(cfg.CC_PORT).toBe(9100);
    expect(cfg.MAX_CORES).toBe(8);
    expect(cfg.SCHEDPOLICY).toBe('POWERSAVE');
    expect(cfg.NC_PORT).toBe(8775);
  });

  it('rejects invalid values with the key name', () => {
    expect(() => loadConfig({ env: {}, overrides: { SCHEDPOLICY: 'FASTEST' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, overrides: { VNET_ADDRSPERNET: 24 } })).toThrow(/VNET_ADDRSPERNET/);
  });

  it('renders text that parses back to the same values', () => {
    const text = renderConf({ ZONE: 'z "1"', CC_PORT: 1 }, 'written by test');
    expect(parseConfText(text)).toEqual({ ZONE: 'z "1"', CC_PORT: '1' });
  });
});
