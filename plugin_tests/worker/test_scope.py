"""The model's domain: every scan's contrast and whether it is in scope (miqa_worker.scope).

Real scans of ../shared (named, and copied to neutral names with no sidecar) and generated
heads with T1, T2 and FLAIR tissue orders, 4D series, EPI resolution and sidecars. No server.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from miqa_worker.cli import main
from miqa_worker.image_io import read_volume
from miqa_worker.model_spec import Domain, load_spec
from miqa_worker.model_store import PACKAGE_MODEL_DIR
from miqa_worker.scope import (
    CONTRASTS,
    ContrastGuess,
    assess_scope,
    detect_contrast,
    header_contrast,
    in_scope,
    name_contrast,
    words_contrast,
)

SHARED_MRI = Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / 'mri'
SHIPPED = load_spec(PACKAGE_MODEL_DIR / 'miqa-default').domain

#: Every single-file scan in ../shared and its contrast (SOURCES.md there); the DICOM series is
#: a Siemens MOSAIC the reader refuses, so it never reaches the scope test.
REAL_SCANS = {
    'fnndsc-sag-anon_child3y_T1w.nii.gz': 'T1w',
    'ixi-nichart_IXI012-HH-1211_T1w-2mm.nii.gz': 'T1w',
    'niivue-register_head-ext_T1w-1p6mm.nii.gz': 'T1w',
    'openneuro-ds002748_sub-01_T1w-skullstripped.nii.gz': 'T1w',
    'cstar-stroke_patient_T1w-brain.nii.gz': 'T1w',
    'pyradiomics_brain1_T1w-clinical-6p5mm.nrrd': 'T1w',
    'niivue-register_head_T2w.nii.gz': 'T2w',
    'cstar-stroke_patient_T2w-brain.nii.gz': 'T2w',
    'cstar-stroke_patient_FLAIR-brain.nii.gz': 'FLAIR',
    'cstar-stroke_patient_FLAIR-brain-oblique.nrrd': 'FLAIR',
    'ixi-miqa_IXI002-Guys-0828_dwi-vol00.nii.gz': 'dwi',
    'niivue_epi_bold-3d.mha': 'bold',
    'nibabel_example4d_bold-4d.nii.gz': 'bold',
    'dcmqa_stc-test_sag-int-36sl_bold-motion-4d.nii': 'bold',
    'niivue_mpld-asl_asl-4d.nii.gz': 'asl',
}


def _ending(name: str) -> str:
    return '.nii.gz' if name.endswith('.nii.gz') else Path(name).suffix


@pytest.fixture(scope='module')
def real_volumes():
    """The real scans, read once (skips when ../shared is absent)."""
    if not SHARED_MRI.is_dir():
        pytest.skip(f'needs the real scans in {SHARED_MRI}, which is absent here')
    return {name: read_volume(SHARED_MRI / name) for name in REAL_SCANS}


def test_the_shipped_domain_is_3d_t1w():
    assert SHIPPED.contrasts == ('T1w',) and SHIPPED.dimensions == 3 and SHIPPED.volumes == 1


@pytest.mark.realdata
def test_real_scans_by_their_names_and_sidecars(real_volumes):
    for name, contrast in REAL_SCANS.items():
        sidecar_file = SHARED_MRI / (name[:-len(_ending(name))] + '.json')
        sidecar = sidecar_file.read_bytes() if sidecar_file.is_file() else None
        scope = assess_scope(SHIPPED, SHARED_MRI / name, real_volumes[name], sidecar)
        assert scope['contrast'] == contrast and scope['source'] == 'header', (name, scope)
        assert scope['in_scope'] is (contrast == 'T1w'), (name, scope)
        if contrast != 'T1w':
            assert 'outside' in scope['reason'] or '4D series' in scope['reason'], scope


@pytest.mark.realdata
def test_real_scans_under_neutral_names_without_sidecars(real_volumes, tmp_path):
    """Every T1 in scope and every T2, FLAIR, DWI, BOLD and ASL out, judged from the file as
    read from ``scanN.<ext>``: by the image (tissue order, EPI resolution) and 4D shape."""
    judged = {}
    for number, (name, contrast) in enumerate(REAL_SCANS.items(), 1):
        copy = tmp_path / f'scan{number}{_ending(name)}'
        shutil.copyfile(SHARED_MRI / name, copy)
        scope = assess_scope(SHIPPED, copy, read_volume(copy))
        judged[name] = scope
        assert scope['in_scope'] is (contrast == 'T1w'), (name, scope)
        assert scope['source'] in ('image', 'none'), scope
    # the image test names the contrast where it can, never as a T1 when it is not one
    assert {judged[n]['contrast'] for n, c in REAL_SCANS.items() if c == 'T1w'} == {'T1w'}
    for name in ('niivue-register_head_T2w.nii.gz', 'cstar-stroke_patient_T2w-brain.nii.gz',
                 'ixi-miqa_IXI002-Guys-0828_dwi-vol00.nii.gz'):
        assert judged[name]['contrast'] == 'T2w', judged[name]  # a b0 is T2-like
    for name in ('cstar-stroke_patient_FLAIR-brain.nii.gz',
                 'cstar-stroke_patient_FLAIR-brain-oblique.nrrd'):
        assert judged[name]['contrast'] == 'FLAIR', judged[name]
    assert 'EPI-like' in judged['niivue_epi_bold-3d.mha']['reason']
    for name in ('nibabel_example4d_bold-4d.nii.gz', 'niivue_mpld-asl_asl-4d.nii.gz',
                 'dcmqa_stc-test_sag-int-36sl_bold-motion-4d.nii'):
        assert judged[name]['reason'].startswith('4D series of'), judged[name]


@pytest.mark.realdata
def test_the_image_test_stands_bias_noise_quantisation_and_flips(real_volumes):
    """Each 3D real scan the image test names keeps its contrast under a 25 % bias field
    along two axes, 8-bit quantisation, a left-right flip and (but for the brain-extracted
    FLAIR, whose constant air noise would hide) noise of 3 % of its 99th percentile."""
    from miqa_worker.scope import image_contrast

    rng = np.random.default_rng(0)
    for name, contrast in REAL_SCANS.items():
        if contrast in ('bold', 'asl'):
            continue  # 4D or EPI resolution: not judged by tissue order
        volume = real_volumes[name]
        array = volume.array
        expected = image_contrast(array, volume.spacing)[0]
        assert expected == {'dwi': 'T2w'}.get(contrast, contrast), name
        ramps = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in array.shape],
                            indexing='ij', sparse=True)
        variants = {'bias x': array * (1 + 0.25 * ramps[0]),
                    'bias z': array * (1 + 0.25 * ramps[2]),
                    'uint8': np.round(array / array.max() * 255), 'flip': array[::-1]}
        if contrast != 'FLAIR':
            variants['noise'] = array + rng.normal(0, 0.03 * float(np.percentile(array, 99)),
                                                array.shape)
        for what, changed in variants.items():
            got = image_contrast(np.asarray(changed, dtype=np.float32), volume.spacing)[0]
            assert got == expected, (name, what, got)


@pytest.mark.realdata
def test_the_image_test_takes_a_few_milliseconds(real_volumes):
    """Measured per scan (the best of 3): a neutral name makes it look at the voxels."""
    seconds = []
    for volume in real_volumes.values():
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            assess_scope(SHIPPED, 'scan.nii.gz', volume)
            runs.append(time.perf_counter() - start)
        seconds.append(min(runs))
    print(f'scope test: median {1000 * float(np.median(seconds)):.1f} ms, '
          f'max {1000 * max(seconds):.1f} ms per scan')
    assert float(np.median(seconds)) < 0.1 and max(seconds) < 0.5


# ---- generated heads ----

T1 = {'scalp': 0.9, 'skull': 0.1, 'csf': 0.2, 'gm': 0.5, 'wm': 0.8}
T2 = {'scalp': 0.6, 'skull': 0.1, 'csf': 1.0, 'gm': 0.55, 'wm': 0.35}  # tissue order inverted
FLAIR = {'scalp': 0.6, 'skull': 0.1, 'csf': 0.1, 'gm': 0.6, 'wm': 0.45}


def brain_phantom(levels: dict[str, float], shape=(96, 112, 96), scalp: bool = True,
                  noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A head of nested ellipsoids: scalp, skull, CSF rim, cortex, white matter and two
    ventricles of CSF, at the given intensities; ``scalp`` False: brain-extracted (air 0)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
    radius = np.sqrt((grid ** 2 / np.array([0.8, 0.9, 0.75])[:, None, None, None] ** 2).sum(0))
    data = np.zeros(shape, np.float32)
    if scalp:
        data[radius < 1.0] = levels['scalp']
        data[radius < 0.93] = levels['skull']
    data[radius < 0.87] = levels['csf']
    data[radius < 0.83] = levels['gm']
    data[radius < 0.72] = levels['wm']
    for side in (-0.12, 0.12):
        centre = np.array([side, 0.05, 0.1])[:, None, None, None]
        size = np.array([0.1, 0.35, 0.15])[:, None, None, None]
        data[np.sqrt((((grid - centre) / size) ** 2).sum(0)) < 1.0] = levels['csf']
    data += rng.normal(0, noise, shape).astype(np.float32) * (data > 0)
    return np.clip(data * 1000, 0, None).astype(np.float32)


def _save(array: np.ndarray, path: Path, zooms=(1.0, 1.0, 1.0)) -> Path:
    image = nib.Nifti1Image(array, np.diag([*zooms, 1.0]))
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize(('levels', 'scalp', 'contrast'), [
    (T1, True, 'T1w'), (T1, False, 'T1w'), (T2, True, 'T2w'), (T2, False, 'T2w'),
    (FLAIR, False, 'FLAIR')])
def test_generated_heads_are_judged_by_their_tissue_order(levels, scalp, contrast, tmp_path):
    path = _save(brain_phantom(levels, scalp=scalp), tmp_path / 'scan7.nii.gz')
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['contrast'] == contrast and scope['source'] == 'image', scope
    assert scope['in_scope'] is (contrast == 'T1w'), scope


def test_a_whole_head_with_zeroed_air_is_not_taken_for_a_brain(tmp_path):
    """Air of exact zeros and a rim of bright scalp: a T1 (3 L), not a brain-extracted FLAIR."""
    path = _save(brain_phantom(T1, shape=(160, 192, 160)), tmp_path / 'scan.nii.gz',
                 zooms=(1.3, 1.3, 1.3))
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['contrast'] == 'T1w' and scope['in_scope'], scope


def test_the_test_suites_t1_like_phantom_is_in_scope(phantom, tmp_path):
    path = _save(phantom, tmp_path / 'scan.nii.gz')
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope == {'in_scope': True, 'contrast': 'T1w', 'source': 'image',
                     'reason': scope['reason']} and 'T1-like' in scope['reason']


def test_a_4d_series_is_out_of_scope_whatever_it_shows(tmp_path):
    head = brain_phantom(T1, shape=(64, 72, 64))
    path = _save(np.stack([head, head * 1.01, head], axis=-1), tmp_path / 'scan_T1w.nii.gz')
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['in_scope'] is False and scope['contrast'] == 'T1w'
    assert scope['reason'].startswith('4D series of 3 volumes: the model assesses single 3D')


def test_epi_resolution_is_unknown_and_out(tmp_path):
    path = _save(brain_phantom(T1, shape=(64, 64, 36)), tmp_path / 'scan.nii.gz',
                 zooms=(3.5, 3.5, 4.0))
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['in_scope'] is False and scope['contrast'] == 'unknown'
    assert scope['reason'].startswith('contrast could not be determined (EPI-like resolution')


def test_a_sidecar_saying_t2_wins_over_a_t1_looking_image(tmp_path):
    path = _save(brain_phantom(T1), tmp_path / 'scan.nii.gz')
    volume = read_volume(path)
    for sidecar in ({'SeriesDescription': 't2_tse_tra'},
                    json.dumps({'EchoTime': 0.095, 'RepetitionTime': 4.5}),
                    json.dumps({'EchoTime': 95, 'RepetitionTime': 4500}).encode()):
        scope = assess_scope(SHIPPED, path, volume, sidecar)
        assert scope['contrast'] == 'T2w' and scope['source'] == 'sidecar', scope
        assert scope['in_scope'] is False and 'trained on T1w' in scope['reason']


@pytest.mark.parametrize('broken', ['{"EchoTime": 0.09,', b'\xff\xfe not json', '[1, 2]'])
def test_a_broken_sidecar_gives_a_reason_and_the_image_decides(broken, tmp_path):
    path = _save(brain_phantom(T1), tmp_path / 'scan.nii.gz')
    scope = assess_scope(SHIPPED, path, read_volume(path), broken)
    assert scope['contrast'] == 'T1w' and scope['source'] == 'image' and scope['in_scope']
    assert 'sidecar ignored: not' in scope['reason']


def test_names_sidecars_and_domains():
    assert name_contrast('sub-01_ses-2_run-1_T1w.nii.gz') == 'T1w'
    assert name_contrast('IXI012-HH-1211_T1.nii.gz') == 'T1w'
    assert name_contrast('cstar-stroke_patient_FLAIR-brain.nii.gz') == 'FLAIR'
    assert name_contrast('sub-01_T2-FLAIR.nii') == 'FLAIR'  # FLAIR is the finer word
    assert name_contrast('sub-01_task-rest_bold.nii.gz') == 'bold'
    assert name_contrast('scan7.nii.gz') is None
    assert name_contrast('T1w_to_T2w.nii.gz') is None  # two contrasts: the name cannot tell
    assert words_contrast('ep2d_bold') == 'bold' and words_contrast('sag_int_36sl') is None
    # the child T1 (MPRAGE), the BOLD motion series (echo planar) of ../shared, and BIDS keys
    assert header_contrast({'RepetitionTime': 2.0, 'EchoTime': 0.00252,
                            'InversionTime': 0.9})[0] == 'T1w'
    assert header_contrast({'ScanningSequence': 'EP', 'EchoTime': 0.03,
                            'RepetitionTime': 3})[0] == 'unknown'
    assert header_contrast({'ArterialSpinLabelingType': 'PCASL'})[0] == 'asl'
    assert header_contrast({'TaskName': 'rest'})[0] == 'bold'
    assert header_contrast({'EchoTime': 0.12, 'RepetitionTime': 9, 'InversionTime': 2.5}
                           )[0] == 'FLAIR'
    assert header_contrast({'EchoTime': 0.015, 'RepetitionTime': 3.0})[0] == 'PD'
    assert header_contrast({'Manufacturer': 'Siemens'}) is None
    guess = ContrastGuess('dwi', 'header', 'file name says dwi')
    assert in_scope(Domain(contrasts=('T1w', 'DWI-b0')), guess).in_scope  # b0 is dwi
    assert not in_scope(Domain(), guess).in_scope  # the default domain is T1w only
    ct = ContrastGuess('T1w', 'sidecar', 'sidecar: ...', modality='CT')
    assert in_scope(SHIPPED, ct).reason.startswith('modality CT is outside')
    assert set(CONTRASTS) == {'T1w', 'T2w', 'FLAIR', 'PD', 'dwi', 'bold', 'asl', 'unknown'}


def test_detect_contrast_reads_a_zip_without_dicom_tags_as_an_image(tmp_path):
    """A zipped series whose tags cannot be read (no pydicom, or not DICOM) is judged by its
    voxels, never refused."""
    import zipfile

    inner = _save(brain_phantom(T2), tmp_path / 'inner.nii.gz')
    archive = tmp_path / 'series.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.write(inner, 'inner.nii.gz')
    guess = detect_contrast(archive, read_volume(archive))
    assert guess.contrast == 'T2w' and guess.source == 'image'


def _dicom_zip(path: Path, array: np.ndarray, tags: dict[str, str]) -> Path:
    """A zip of one multi-frame DICOM file written by ITK, with the given header tags."""
    import zipfile

    import itk

    image = itk.image_from_array(np.ascontiguousarray(array.T).astype(np.int16))
    for tag, value in {'0008|0060': 'MR', **tags}.items():  # GDCM writes 16 bits with one
        image[tag] = value
    dicom = path.with_suffix('.dcm')
    itk.imwrite(image, str(dicom))
    with zipfile.ZipFile(path, 'w') as zf:
        zf.write(dicom, 'series/IM0001')
    return path


@pytest.mark.parametrize(('tags', 'contrast', 'in_domain'), [
    ({'0008|103e': 't2_tse_tra'}, 'T2w', False),
    ({'0018|0080': '2300', '0018|0081': '2.98', '0018|0082': '900'}, 'T1w', True),
    ({'0018|0020': 'EP', '0018|0081': '30', '0018|0080': '3000'}, 'unknown', False)])
def test_a_zipped_dicom_series_is_judged_by_its_tags(tags, contrast, in_domain, tmp_path):
    head = brain_phantom(T1 if contrast != 'T1w' else T2, shape=(48, 56, 48))  # tags win
    path = _dicom_zip(tmp_path / 'series.zip', head, tags)
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['contrast'] == contrast and scope['source'] == 'dicom', scope
    assert scope['in_scope'] is in_domain and 'DICOM' in scope['reason']


def test_a_dicom_of_another_modality_is_out_of_scope(tmp_path):
    path = _dicom_zip(tmp_path / 'ct.zip', brain_phantom(T1, shape=(48, 56, 48)),
                      {'0008|0060': 'CT'})
    scope = assess_scope(SHIPPED, path, read_volume(path))
    assert scope['in_scope'] is False and scope['reason'].startswith('modality CT is outside')


# ---- miqa-assess ----


def test_cli_json_and_table_print_the_scope(model_path, tmp_path):
    t1 = _save(brain_phantom(T1, shape=(64, 72, 64)), tmp_path / 'scan1.nii.gz')
    flair = _save(brain_phantom(T1, shape=(64, 72, 64)), tmp_path / 'sub-01_FLAIR.nii.gz')
    bold = _save(brain_phantom(T1, shape=(64, 72, 64)), tmp_path / 'scan3.nii.gz')
    (tmp_path / 'scan3.json').write_text(json.dumps({'TaskName': 'rest'}))
    result = CliRunner().invoke(main, ['--format', 'json', '--no-metrics', '--model',
                                       str(model_path), str(t1), str(flair), str(bold)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    scopes = [row['scope'] for row in rows]
    assert [s['contrast'] for s in scopes] == ['T1w', 'FLAIR', 'bold']
    assert [s['source'] for s in scopes] == ['image', 'header', 'sidecar']
    assert [s['in_scope'] for s in scopes] == [True, False, False]  # the test model's domain
    assert all(set(s) == {'in_scope', 'contrast', 'reason', 'source'} for s in scopes)
    assert all(0 <= row['quality'] <= 10 for row in rows)  # out of scope: scored, flagged
    table = CliRunner().invoke(main, ['--no-metrics', '--model', str(model_path), str(t1),
                                      str(flair)], catch_exceptions=False)
    assert 'scope' in table.stdout and 'out: FLAIR' in table.stdout, table.stdout
