"""Demo scans when ../shared/data/mri is absent: generated from nilearn's MNI152 template."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'devops'))

import demo_data  # noqa: E402
import stack  # noqa: E402


def test_demo_sources_are_generated_without_shared(tmp_path, monkeypatch):
    from miqa_worker.image_io import read_volume

    monkeypatch.setattr(stack, 'SHARED_MRI', tmp_path / 'absent')
    sources = stack.demo_sources(tmp_path)
    assert [session for session, _ in sources] == ['generated'] * len(demo_data.ARTIFACTS)
    volumes = {path.name.split('_')[1]: read_volume(path).array for _, path in sources}
    clean = volumes.pop('clean')
    assert clean.ndim == 3 and min(clean.shape) > 150 and clean.std() > 0
    for name, volume in volumes.items():
        assert volume.shape == clean.shape
        assert not np.allclose(volume, clean), f'{name} left the template unchanged'


def test_demo_sources_use_shared_scans_and_zip_dicom(shared_mri, tmp_path):
    import zipfile

    sources = stack.demo_sources(tmp_path)
    names = {path.name for _, path in sources}
    assert 'cstar-stroke_patient_T1w-brain.nii.gz' in names
    archives = [path for _, path in sources if path.suffix == '.zip']
    assert archives and all(len(zipfile.ZipFile(a).namelist()) == 2 for a in archives)
    assert all(session for session, _ in sources)
