"""Every format the server accepts opens in the browser viewer, with the right voxels.

The real scans in ../shared/data/mri (NIfTI with slopes, 4D, PSR/PSL/LAS orientations and
obliquity, oblique NRRD, MetaImage, a DICOM series) plus conversions of one of them (.mhd + .raw,
.nhdr + .raw.gz, .mgz) are uploaded to a real Girder; client/e2e/formats.e2e.mjs loads each with
the plugin's loader in chromium and renders it. The voxel values it reports at random indices of
the RAS-reoriented volume must equal what nibabel (NIfTI, MGH) or ITK (the others) read, reoriented
to the closest canonical RAS orientation the same way (nibabel's ``io_orientation``).
"""

import json
import os
import subprocess
import zipfile

import numpy as np
import pytest

from .helpers import ARTIFACTS_DIR, CHROMIUM, CLIENT, skip_reason, upload

NIFTI = [
    'fnndsc-sag-anon_child3y_T1w.nii.gz',
    'ixi-nichart_IXI012-HH-1211_T1w-2mm.nii.gz',
    'niivue-register_head_T2w.nii.gz',
    'cstar-stroke_patient_T2w-brain.nii.gz',
    'nibabel_example4d_bold-4d.nii.gz',
    'dcmqa_stc-test_sag-int-36sl_bold-motion-4d.nii',
]
ITK_FILES = [
    'cstar-stroke_patient_FLAIR-brain-oblique.nrrd',
    'pyradiomics_brain1_T1w-clinical-6p5mm.nrrd',
    'niivue_epi_bold-3d.mha',
]


def canonical_from_affine(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxels in the closest canonical RAS order (as nibabel's as_closest_canonical)."""
    from nibabel.orientations import apply_orientation, io_orientation

    return apply_orientation(data, io_orientation(affine))


def expected_nibabel(path) -> np.ndarray:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)  # scaled by scl_slope / scl_inter, as the viewer does
    if data.ndim > 3:
        data = data[..., 0]
    return canonical_from_affine(data, img.affine)


def expected_itk(path) -> np.ndarray:
    import itk

    img = itk.imread(str(path))
    data = itk.array_from_image(img).transpose(2, 1, 0)  # ITK arrays are (z, y, x)
    direction = np.array(itk.array_from_matrix(img.GetDirection()))
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1, -1, 1]) @ direction @ np.diag(np.array(img.GetSpacing()))
    return canonical_from_affine(data, affine)


@pytest.mark.plugin('miqa')
@pytest.mark.timeout(300)
def test_formats_open_in_browser(miqa_browser_server, admin, fsAssetstore, shared_mri, tmp_path):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    import itk
    import nibabel as nib
    from girder.models.folder import Folder
    from girder.models.upload import Upload

    server = miqa_browser_server
    folder = Folder().createFolder(admin, 'formats', parentType='user', creator=admin)
    rng = np.random.default_rng(3)
    scans, expected = [], {}

    def add(paths, expect):
        item = upload(paths[0], folder, admin, fsAssetstore)
        for extra in paths[1:]:
            with extra.open('rb') as fh:
                Upload().uploadFromFile(fh, extra.stat().st_size, extra.name, parentType='item',
                                        parent=item, user=admin, assetstore=fsAssetstore)
        if expect is None:
            indices = []
        else:
            indices = [[int(rng.integers(0, n)) for n in expect.shape] for _ in range(200)]
            expected[str(item['_id'])] = (expect, indices)
        scans.append({'itemId': str(item['_id']), 'name': paths[0].name, 'indices': indices})

    for name in NIFTI:
        add([shared_mri / name], expected_nibabel(shared_mri / name))
    for name in ITK_FILES:
        add([shared_mri / name], expected_itk(shared_mri / name))
    # Detached headers and MGZ, converted from a real scan.
    source = shared_mri / 'cstar-stroke_patient_FLAIR-brain-oblique.nrrd'
    image = itk.imread(str(source))
    itk.imwrite(image, str(tmp_path / 'flair.mhd'), compression=False)
    add([tmp_path / 'flair.mhd', tmp_path / 'flair.raw'], expected_itk(source))
    itk.imwrite(image, str(tmp_path / 'flair.nhdr'), compression=True)
    data_files = [p for p in tmp_path.iterdir() if p.name.startswith('flair.') and
                  p.suffix not in ('.mhd', '.raw', '.nhdr')]
    add([tmp_path / 'flair.nhdr', *data_files], expected_itk(source))
    t2 = nib.load(str(shared_mri / 'niivue-register_head_T2w.nii.gz'))
    mgz = tmp_path / 'head_T2w.mgz'
    nib.save(nib.MGHImage(np.asanyarray(t2.dataobj).astype(np.int16), t2.affine), str(mgz))
    add([mgz], expected_nibabel(mgz))
    dicom_dir = shared_mri / 'dicom'
    series = sorted(p for p in dicom_dir.rglob('*') if p.is_file())
    if series:
        archive = tmp_path / 'dicom-series.zip'
        with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED) as zf:
            for p in series:
                zf.write(p, arcname=str(p.relative_to(dicom_dir)))
        add([archive], None)

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    inputs = tmp_path / 'formats-input.json'
    inputs.write_text(json.dumps(scans))
    env = {**os.environ, 'MIQA_URL': f'http://127.0.0.1:{server.boundPort}/',
           'MIQA_LOGIN': 'admin:password', 'MIQA_ARTIFACT_DIR': str(ARTIFACTS_DIR),
           'MIQA_FORMATS_INPUT': str(inputs), 'CHROMIUM': str(CHROMIUM)}
    proc = subprocess.run(['node', str(CLIENT / 'e2e' / 'formats.e2e.mjs')], cwd=CLIENT, env=env,
                          capture_output=True, text=True, timeout=240)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r['itemId']: r for r in json.loads((ARTIFACTS_DIR / 'formats.json').read_text())}
    assert len(results) == len(scans)
    for scan in scans:
        got = results[scan['itemId']]
        assert 'error' not in got, (scan['name'], got.get('error'))
        if scan['itemId'] not in expected:
            assert np.prod(got['dims']) > 1000, (scan['name'], got['dims'])
            continue
        want, indices = expected[scan['itemId']]
        assert list(got['dims']) == list(want.shape), (scan['name'], got['dims'], want.shape)
        want_values = np.array([want[tuple(idx)] for idx in indices], dtype=np.float64)
        np.testing.assert_allclose(np.array(got['values'], dtype=np.float64), want_values,
                                   rtol=1e-5, atol=1e-4, err_msg=scan['name'])
