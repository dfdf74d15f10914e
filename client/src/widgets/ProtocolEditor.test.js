import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  errorField, parseTolerance, parseValue, referenceBody, referenceKind, references, textFormat, valueText,
} from './ProtocolEditor.js';

const RESP = {
  references: [
    { scanType: 'T1w', site: 'site-b', reference: 'inferred', scans: 12, basis: 'site', parameters: { RepetitionTime: { value: 2.3, tolerance: null, severity: 'warning' } } },
    { scanType: 'T1w', site: null, reference: 'set', userId: 'u1', parameters: {
      VoxelSize: { value: [1, 1, 1], tolerance: 0.05, severity: 'exclude' }, EchoTime: { value: 0.003, tolerance: 0.0005, severity: 'warning' } } },
    { scanType: 'FLAIR', site: 'site-a', inferred: true, parameters: { Manufacturer: 'GE' } },
  ],
};

describe('references', () => {
  it('sorts by scan type, all sites first, and reads the marks and parameters', () => {
    const refs = references(RESP);
    assert.deepEqual(refs.map((r) => [r.scanType, r.site, r.kind, r.peers, r.basis]), [
      ['FLAIR', 'site-a', 'inferred', null, null], ['T1w', null, 'set', null, null], ['T1w', 'site-b', 'inferred', 12, 'site']]);
    assert.deepEqual(refs[1].parameters, [
      { key: 'EchoTime', value: 0.003, tolerance: 0.0005, severity: 'warning' },
      { key: 'VoxelSize', value: [1, 1, 1], tolerance: 0.05, severity: 'exclude' }]);
    assert.deepEqual(refs[0].parameters, [{ key: 'Manufacturer', value: 'GE', tolerance: null, severity: 'warning' }]);
    assert.deepEqual(references([RESP.references[0]]).length, 1); // a bare list
    assert.deepEqual(references(null), []);
  });

  it('tells set from inferred by any mark the server gives', () => {
    assert.equal(referenceKind({ source: 'set' }), 'set');
    assert.equal(referenceKind({ inferred: false }), 'set');
    assert.equal(referenceKind({ updated: '2026-01-01' }), 'set');
    assert.equal(referenceKind({}), 'inferred');
  });

  it('writes a reference back as the PUT body entry', () => {
    const ref = references(RESP)[1];
    assert.deepEqual(referenceBody(ref), {
      scanType: 'T1w', site: null,
      parameters: { EchoTime: { value: 0.003, tolerance: 0.0005, severity: 'warning' }, VoxelSize: { value: [1, 1, 1], tolerance: 0.05, severity: 'exclude' } },
    });
  });
});

describe('fields', () => {
  it('parses values, lists and tolerances as typed', () => {
    assert.equal(parseValue('2.3'), 2.3);
    assert.deepEqual(parseValue('[1, 1, 1.2]'), [1, 1, 1.2]);
    assert.deepEqual(parseValue('1, 1, 1.2'), [1, 1, 1.2]);
    assert.equal(parseValue('syngo MR E11'), 'syngo MR E11');
    assert.equal(parseValue('11', 'E10'), '11'); // text stays text
    assert.equal(parseValue('  '), null);
    assert.equal(parseTolerance(''), null);
    assert.equal(parseTolerance('0.01'), 0.01);
    assert.ok(Number.isNaN(parseTolerance('a lot')));
    assert.equal(valueText([1, 1, 1]), '[1,1,1]');
    assert.equal(valueText(null), '');
  });

  it('reads the format of pasted text', () => {
    assert.equal(textFormat('[{"scanType": "T1w"}]'), 'json');
    assert.equal(textFormat('scanType,site,parameter\nT1w,,RepetitionTime'), 'csv');
    assert.equal(textFormat('[not json'), 'csv');
  });

  it('finds the parameter and field a 400 reason names', () => {
    const keys = ['EchoTime', 'RepetitionTime', 'Echo'];
    assert.deepEqual(errorField('RepetitionTime: tolerance must be a non-negative number', keys), { key: 'RepetitionTime', field: 'tolerance' });
    assert.deepEqual(errorField('parameters.EchoTime.severity must be warning or exclude', keys), { key: 'EchoTime', field: 'severity' });
    assert.deepEqual(errorField('row 3: unknown scan type', keys), { key: null, field: null });
    // the server's own wording (models/protocol.py)
    assert.deepEqual(errorField("reference 1: tolerance of EchoTime must be a number >= 0 or empty, not 'abc'.", keys), { key: 'EchoTime', field: 'tolerance' });
    assert.deepEqual(errorField('reference 1: value of RepetitionTime must be a number, text or a list of numbers, not null.', keys), { key: 'RepetitionTime', field: 'value' });
  });
});
