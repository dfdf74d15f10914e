import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { acquisitionRows, formatValue, parameterLabel } from './AcquisitionPanel.js';

const ACQUISITION = {
  parameters: {
    Manufacturer: 'Siemens', SoftwareVersions: 'syngo MR E11', MagneticFieldStrength: 3,
    RepetitionTime: 2.9, EchoTime: 0.00298, InversionTime: null, FlipAngle: 9,
    VoxelSize: [1, 1, 1.2000000001], Matrix: [256, 256, 176], Orientation: 'RAS', CoilString: 'HEA;HEP',
  },
  sources: { Manufacturer: 'sidecar', RepetitionTime: 'sidecar', VoxelSize: 'nifti' },
  problems: ['sidecar scan7.json is not JSON (line 3: Expecting value)'],
};
const PROTOCOL = {
  deviations: [
    { parameter: 'SoftwareVersions', expected: 'syngo MR E11', found: 'syngo MR XA30', severity: 'warning', tolerance: null, reference: 'inferred' },
    { parameter: 'RepetitionTime', expected: 2.3, found: 2.9, severity: 'exclude', tolerance: 0.01, reference: 'set' },
    { parameter: 'ReceiveCoilName', expected: 'HeadNeck_20', found: null, severity: 'warning', tolerance: null, reference: 'set' },
  ],
};

describe('formatValue', () => {
  it('gives TR/TE/TI in ms, units, lists with ×, unknown for missing', () => {
    assert.equal(formatValue('RepetitionTime', 2.3), '2300 ms');
    assert.equal(formatValue('EchoTime', 0.00298), '2.98 ms');
    assert.equal(formatValue('VoxelSize', [1, 1, 1.2000000001]), '1 × 1 × 1.2 mm');
    assert.equal(formatValue('Matrix', [256, 256, 176]), '256 × 256 × 176');
    assert.equal(formatValue('FlipAngle', 9), '9 °');
    assert.equal(formatValue('Manufacturer', 'GE'), 'GE');
    assert.equal(formatValue('InversionTime', null), 'unknown');
    assert.equal(formatValue('Orientation', undefined), 'unknown');
    assert.equal(parameterLabel('RepetitionTime'), 'Repetition time');
  });
});

describe('acquisitionRows', () => {
  it('puts deviations first (exclude before warning) with the reference, then the order of the panel', () => {
    const { rows, problems, deviations } = acquisitionRows(ACQUISITION, PROTOCOL);
    assert.equal(deviations, 3);
    assert.deepEqual(rows.map((r) => r.key), [
      'RepetitionTime', 'SoftwareVersions', 'ReceiveCoilName', 'Manufacturer', 'MagneticFieldStrength',
      'EchoTime', 'InversionTime', 'FlipAngle', 'VoxelSize', 'Matrix', 'Orientation', 'CoilString']);
    const tr = rows[0];
    assert.deepEqual(tr.deviation, { expected: '2300 ms', found: '2900 ms', severity: 'exclude', tolerance: 0.01, toleranceText: '10 ms', reference: 'set' });
    assert.equal(tr.value, '2900 ms');
    assert.equal(tr.source, 'sidecar');
    const coil = rows.find((r) => r.key === 'ReceiveCoilName'); // deviates, not among the parameters
    assert.equal(coil.value, 'unknown');
    assert.equal(coil.known, false);
    const ti = rows.find((r) => r.key === 'InversionTime');
    assert.deepEqual([ti.value, ti.known, ti.deviation], ['unknown', false, null]);
    assert.deepEqual(problems, ['sidecar scan7.json is not JSON (line 3: Expecting value)']);
  });

  it('is empty for a scan without acquisition or protocol check', () => {
    assert.deepEqual(acquisitionRows(undefined, undefined), { rows: [], problems: [], deviations: 0 });
    assert.deepEqual(acquisitionRows({ problems: ['sidecar names another scan (sub-02)'] }, { deviations: 'x' }).problems,
      ['sidecar names another scan (sub-02)']);
  });
});
