"""Acquisition parameters (miqa_worker.acquisition): the real scans of ../shared in every format,
generated DICOM series with chosen tags, sidecars that are broken or name another scan, missing
tags, and the parameters in the assessment and ``miqa-assess --format json``. No server."""

from __future__ import annotations

import json
import zipfile

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from miqa_worker.acquisition import PARAMETERS, acquisition_parameters
from miqa_worker.cli import main
from miqa_worker.image_io import read_volume
from miqa_worker.scope import read_sidecar

from ..dicom_series import T1W_TAGS, phantom, series_zip
from .conftest import head_phantom


def _known(result: dict) -> dict:
    return {k: v for k, v in result['parameters'].items() if v is not None}


def test_every_parameter_is_a_key_and_unknown_is_none(tmp_path):
    result = acquisition_parameters(None)
    assert list(result['parameters']) == list(PARAMETERS)
    assert all(v is None for v in result['parameters'].values())
    assert result['sources'] == {} and result['problems'] == []


def test_real_nifti_with_its_sidecar(shared_mri):
    path = shared_mri / 'fnndsc-sag-anon_child3y_T1w.nii.gz'
    found = acquisition_parameters(path, read_sidecar(path))
    p, sources = found['parameters'], found['sources']
    assert found['problems'] == []
    # SOURCES.md: Siemens Skyra 3T, 32-channel head coil, TR 2000 / TE 2.52 / TI 900 ms, FA 9
    assert (p['Manufacturer'], p['ManufacturersModelName'], p['MagneticFieldStrength']) == (
        'Siemens', 'Skyra', 3.0)
    assert (p['RepetitionTime'], p['EchoTime'], p['InversionTime'], p['FlipAngle']) == (
        2.0, 0.00252, 0.9, 9.0)
    assert p['ReceiveCoilName'] == 'Head_32' and p['ScanningSequence'] == 'GR_IR'
    header = nib.load(path).header
    assert p['VoxelSize'] == pytest.approx([float(z) for z in header.get_zooms()])
    assert p['Matrix'] == [192, 256, 256] and p['Orientation'] == 'RAS'
    assert sources['RepetitionTime'] == 'sidecar' and sources['VoxelSize'] == 'nifti'


@pytest.mark.parametrize(('name', 'voxel', 'matrix', 'orientation', 'tr'), [
    ('ixi-nichart_IXI012-HH-1211_T1w-2mm.nii.gz', [2.0, 2.0, 2.0], [120, 120, 90], 'PSR', None),
    ('nibabel_example4d_bold-4d.nii.gz', [2.0, 2.0, 2.2], [128, 96, 24], 'LAS', 2.0),
    ('niivue_mpld-asl_asl-4d.nii.gz', [3.4375, 3.4375, 4.95], [64, 64, 24], 'LAS', 4.1),
    ('cstar-stroke_patient_FLAIR-brain-oblique.nrrd', [1.0, 1.0, 1.0], [124, 160, 140], 'RAS',
     None),
    ('pyradiomics_brain1_T1w-clinical-6p5mm.nrrd', [0.78125, 0.78125, 6.5], [256, 256, 25],
     'LAS', None),
    ('niivue_epi_bold-3d.mha', [3.4375, 3.4375, 3.8], [64, 64, 37], 'LAS', None),
])
def test_real_image_headers(shared_mri, name, voxel, matrix, orientation, tr):
    """The facts of SOURCES.md (voxel size, shape, orientation; TR of the 4D series, with
    example4d's 2000 stored in "seconds" read as milliseconds)."""
    found = acquisition_parameters(shared_mri / name)
    p = found['parameters']
    assert p['VoxelSize'] == pytest.approx(voxel, abs=1e-4)
    assert p['Matrix'] == matrix and p['Orientation'] == orientation
    assert p['RepetitionTime'] == (pytest.approx(tr) if tr else None)
    assert p['Manufacturer'] is None and found['problems'] == []
    assert set(found['sources'].values()) == {name.rsplit('.', 1)[-1].replace('gz', 'nifti')}
    volume = read_volume(shared_mri / name)  # the reader's orientation of the same file
    assert volume.original_orientation == orientation


def test_real_dicom_series_zipped(shared_mri, tmp_path):
    archive = tmp_path / 'series.zip'
    with zipfile.ZipFile(archive, 'w') as out:
        for member in sorted((shared_mri / 'dicom').glob('*/*')):
            out.write(member, f'series/{member.name}')
    found = acquisition_parameters(archive)
    p = found['parameters']
    # SOURCES.md #17: Siemens TrioTim 3T EPI, TR 3.0 s, institution USC
    assert (p['Manufacturer'], p['ManufacturersModelName'], p['InstitutionName']) == (
        'SIEMENS', 'TrioTim', 'USC')
    assert (p['RepetitionTime'], p['EchoTime'], p['FlipAngle']) == (3.0, 0.03, 76.0)
    assert p['AcquisitionDate'] == '2014-03-10' and p['ScanningSequence'] == 'EP'
    assert set(found['sources'].values()) == {'dicom'}


def test_generated_series_with_chosen_tags(tmp_path):
    path = series_zip(tmp_path / 'scan.zip', phantom((40, 44, 20)), spacing=(0.9, 0.8, 1.5),
                      tags={'RepetitionTime': 2500, 'SoftwareVersions': 'syngo MR XA30',
                            'InPlanePhaseEncodingDirection': 'COL'})
    found = acquisition_parameters(path)
    p = found['parameters']
    assert (p['RepetitionTime'], p['EchoTime'], p['InversionTime']) == (2.5, 0.00298, 0.9)
    assert p['SoftwareVersions'] == 'syngo MR XA30' and p['Manufacturer'] == 'SIEMENS'
    assert p['ManufacturersModelName'] == T1W_TAGS['ManufacturerModelName']
    assert p['SequenceVariant'] == 'SK_SP_MP' and p['PhaseEncodingDirection'] == 'j'
    assert p['VoxelSize'] == [0.9, 0.8, 1.5] and p['SliceThickness'] == 1.5
    assert p['Matrix'] == [40, 44, 20] and p['AcquisitionDate'] == '2026-01-15'
    volume = read_volume(path)
    assert p['Orientation'] == volume.original_orientation == 'LPS'
    assert acquisition_parameters(path, image=volume)['parameters']['Matrix'] == [40, 44, 20]


def test_missing_tags_are_none(tmp_path):
    path = series_zip(tmp_path / 'bare.zip', phantom((24, 24, 8)), tags={
        key: None for key in ('Manufacturer', 'RepetitionTime', 'FlipAngle', 'AcquisitionDate',
                              'SeriesDate', 'StudyDate', 'ReceiveCoilName')})
    found = acquisition_parameters(path)
    p = found['parameters']
    for key in ('Manufacturer', 'RepetitionTime', 'FlipAngle', 'AcquisitionDate',
                'ReceiveCoilName'):
        assert p[key] is None and key not in found['sources']
    assert p['EchoTime'] == 0.00298 and found['problems'] == []


def test_a_zip_that_is_not_a_zip_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / 'broken.zip'
    path.write_bytes(b'PK\x03\x04 not really')
    found = acquisition_parameters(path)
    assert _known(found) == {} and found['problems'][0].startswith('DICOM tags not read')


def _nifti(path, descrip: str = '') -> str:
    image = nib.Nifti1Image(head_phantom((32, 30, 28)).astype(np.int16),
                            np.diag([1.2, 1.1, 1.0, 1]))
    image.header['descrip'] = descrip.encode()
    nib.save(image, path)
    return str(path)


def test_broken_sidecar_is_a_problem_and_the_headers_still_count(tmp_path):
    path = _nifti(tmp_path / 'scan7.nii.gz', 'TE=4.5;Time=1;phase=1')
    found = acquisition_parameters(path, b'{"RepetitionTime": 2.3,\n"EchoTime": ]')
    assert len(found['problems']) == 1
    assert found['problems'][0].startswith('sidecar scan7.json ignored: not JSON (')
    assert 'line 2' in found['problems'][0]
    p = found['parameters']
    assert p['RepetitionTime'] is None and p['EchoTime'] == 0.0045  # from descrip
    assert p['VoxelSize'] == pytest.approx([1.2, 1.1, 1.0])
    listed = acquisition_parameters(path, '[1, 2]')
    assert listed['problems'] == ['sidecar scan7.json ignored: not a JSON object']


@pytest.mark.parametrize(('sidecar', 'why'), [
    ({'IntendedFor': ['bids::sub-01/func/sub-01_bold.nii.gz'], 'RepetitionTime': 2.3},
     "IntendedFor names 'bids::sub-01/func/sub-01_bold.nii.gz'"),
    ({'Sources': 'bids:raw:sub-02/anat/sub-02_T1w.nii.gz', 'RepetitionTime': 2.3},
     'Sources names'),
    ({'SeriesDescription': 't2_tse_tra', 'RepetitionTime': 2.3}, 'is a T2w, the file name a T1w'),
])
def test_a_sidecar_of_another_scan_is_not_used(tmp_path, sidecar, why):
    path = _nifti(tmp_path / 'sub-01_T1w.nii.gz')
    found = acquisition_parameters(path, json.dumps(sidecar))
    assert len(found['problems']) == 1, found['problems']
    assert found['problems'][0].startswith('sidecar sub-01_T1w.json names another scan (')
    assert why in found['problems'][0]
    assert found['parameters']['RepetitionTime'] is None
    assert found['parameters']['Matrix'] == [32, 30, 28]


def test_a_sidecar_naming_this_scan_and_one_disagreeing_with_dicom(tmp_path):
    path = _nifti(tmp_path / 'sub-01_T1w.nii.gz')
    mine = {'IntendedFor': 'anat/sub-01_T1w.nii.gz', 'RepetitionTime': 2300,
            'AcquisitionDateTime': '2026-02-03T10:00:00', 'SeriesDescription': 'MPRAGE'}
    found = acquisition_parameters(path, mine)
    assert found['problems'] == []
    assert found['parameters']['RepetitionTime'] == 2.3  # milliseconds in a sidecar: seconds
    assert found['parameters']['AcquisitionDate'] == '2026-02-03'
    assert found['sources']['RepetitionTime'] == 'sidecar'
    series = series_zip(tmp_path / 'series.zip', phantom((16, 16, 4)))
    other = acquisition_parameters(series, {'SeriesDescription': 'localizer'})
    assert "its SeriesDescription 'localizer' is not the DICOM header's 't1_mprage_sag'" in (
        other['problems'][0])
    assert other['parameters']['SeriesDescription'] == 't1_mprage_sag'


def test_assessment_and_json_output_carry_the_parameters(model_path, tmp_path):
    path = _nifti(tmp_path / 'scan.nii.gz', 'TE=3;Time=1')
    (tmp_path / 'scan.json').write_text('{"Manufacturer": "GE",')  # broken: a problem
    result = CliRunner().invoke(main, ['--format', 'json', '--model', str(model_path),
                                       '--no-metrics', path], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    acquisition = row['acquisition']
    assert 0 <= row['quality'] <= 10  # the rest of the assessment happened
    assert acquisition['parameters']['EchoTime'] == 0.003
    assert acquisition['parameters']['Manufacturer'] is None
    assert 'not JSON' in acquisition['problems'][0]
    assert 'acquisition' not in row['timings']
    table = CliRunner().invoke(main, ['--model', str(model_path), '--no-metrics', path])
    assert 'TE 3 ms' in table.stdout


def test_assessing_a_generated_dicom_series_carries_its_parameters(assessor, tmp_path):
    path = series_zip(tmp_path / 'site-b.zip', phantom((64, 72, 48)),
                      tags={'RepetitionTime': 2500, 'SoftwareVersions': 'syngo MR XA30'})
    result = assessor.assess_file(path, metrics=False)
    p = result['acquisition']['parameters']
    assert (p['RepetitionTime'], p['SoftwareVersions']) == (2.5, 'syngo MR XA30')
    assert p['Matrix'] == [64, 72, 48] and p['Orientation'] == result['volume']['orientation']
    assert result['acquisition']['problems'] == [] and 0 <= result['quality'] <= 10
