import { describe, expect, it } from 'vitest';
import { parseOutput, renderRows } from '../src/output.js';

describe('listing output', () => {
  const rows = [{ type: 'clc', name: 'clc', state: 'ENABLED' }, { type: 'nc', name: 'node-with-long-name', state: 'NOTREADY', detail: undefined }];
  it('table aligns columns under upper-case headers and shows missing values as -', () => {
    expect(renderRows(rows, ['type', 'name', 'state', 'detail'], 'table').split('\n')).toEqual([
      'TYPE  NAME                 STATE     DETAIL',
      'clc   clc                  ENABLED   -',
      'nc    node-with-long-name  NOTREADY  -',
    ]);
  });
  it('json is the rows themselves', () => {
    expect(JSON.parse(renderRows(rows, ['type'], 'json'))).toEqual(JSON.parse(JSON.stringify(rows)));
  });
  it('rejects other formats with a message naming the choices', () => {
    expect(() => parseOutput('yaml')).toThrow(/json or table/);
  });
});
