"""Generated DICOM MR series with chosen header tags, zipped as a scan upload (issue #22 tests).

One file per axial slice, written with pydicom (headers a real scanner writes: manufacturer,
software, TR/TE/TI, flip angle, pixel spacing, orientation, position), so the worker's ITK reader
assembles the volume and :mod:`miqa_worker.acquisition` reads its parameters. Tag values are given
by DICOM keyword in DICOM units (``RepetitionTime=2300`` is milliseconds); ``None`` leaves a tag
out. :func:`protocol_study` writes a small multi-site study with the deviations the triage tests
look for: one site with a wrong TR, one with a software upgrade halfway.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The nominal protocol of the generated series: a 3T T1w MPRAGE.
T1W_TAGS: dict[str, Any] = {
    'Modality': 'MR',
    'Manufacturer': 'SIEMENS',
    'ManufacturerModelName': 'Prisma',
    'SoftwareVersions': 'syngo MR E11',
    'MagneticFieldStrength': 3.0,
    'InstitutionName': 'MIQA Test Hospital',
    'StationName': 'MRC0001',
    'DeviceSerialNumber': '10001',
    'SeriesDescription': 't1_mprage_sag',
    'ProtocolName': 't1_mprage_sag',
    'ScanningSequence': ['GR', 'IR'],
    'SequenceVariant': ['SK', 'SP', 'MP'],
    'SequenceName': '*tfl3d1_16ns',
    'MRAcquisitionType': '3D',
    'RepetitionTime': 2300.0,
    'EchoTime': 2.98,
    'InversionTime': 900.0,
    'FlipAngle': 9.0,
    'PixelBandwidth': 240.0,
    'ReceiveCoilName': 'Head_32',
    'InPlanePhaseEncodingDirection': 'ROW',
    'AcquisitionDate': '20260115',
    'SeriesDate': '20260115',
    'StudyDate': '20260115',
}

MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4'


def phantom(shape: tuple[int, int, int] = (64, 72, 48), seed: int = 0) -> np.ndarray:
    """A crude T1-like head (air, scalp, CSF, GM, WM) as int16 ``[x, y, z]``."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'))
    radius = np.sqrt((grid ** 2 / np.array([0.8, 0.9, 0.75])[:, None, None, None] ** 2).sum(0))
    data = np.zeros(shape, np.float32)
    data[radius < 1.0] = 0.9
    data[radius < 0.9] = 0.25
    data[radius < 0.85] = 0.55
    data[radius < 0.6] = 0.8
    data += rng.normal(0, 0.02, shape).astype(np.float32)
    return np.abs(data * 1000).astype(np.int16)


def _uid(*parts: Any) -> str:
    """A deterministic UID (the same arguments give the same UID)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def series_files(array: np.ndarray | None = None, spacing: tuple[float, float, float] = (
        1.0, 1.0, 1.2), tags: Mapping[str, Any] | None = None, name: str = 'series'
        ) -> list[tuple[str, bytes]]:
    """The files of one axial DICOM series: ``[(file name, bytes)]``, one per slice.

    Args:
        array: the voxels ``[x, y, z]`` (int16); a phantom head by default.
        spacing: voxel size (x, y, z) in mm; the slice thickness is z.
        tags: header values by DICOM keyword over :data:`T1W_TAGS`; ``None`` leaves one out.
        name: seeds the series' UIDs (two series of one name share them).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    array = phantom() if array is None else np.asarray(array)
    pixels = array.astype(np.int16)
    header = {**T1W_TAGS, 'SliceThickness': float(spacing[2]),
              'SpacingBetweenSlices': float(spacing[2]), **(tags or {})}
    study, series = _uid(name, 'study'), _uid(name, 'series')
    files = []
    for k in range(pixels.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = _uid(name, 'slice', k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = _uid(name, 'frame')
        ds.PatientName, ds.PatientID = 'MIQA^Phantom', name[:64]
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        for keyword, value in header.items():
            if value is not None:
                setattr(ds, keyword, value)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-spacing[0] * pixels.shape[0] / 2,
                                   -spacing[1] * pixels.shape[1] / 2,
                                   round(k * spacing[2], 4)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row (y), column (x)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append((f'{name}/IM{k + 1:04d}.dcm', out.getvalue()))
    return files


def series_zip(path: str | Path, array: np.ndarray | None = None,
               spacing: tuple[float, float, float] = (1.0, 1.0, 1.2),
               tags: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
    """Write one DICOM series as a zip at ``path`` (the file a scan upload is); its path.

    Arguments as in :func:`series_files`; ``name`` defaults to the zip's stem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for member, data in series_files(array, spacing, tags, name or path.stem):
            archive.writestr(member, data)
    return path


def protocol_study(root: str | Path, scans: int = 4, shape: tuple[int, int, int] = (
        64, 72, 48)) -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """A three-site study of zipped T1w series under ``root/<site>/sub-NN/t1.zip``.

    - ``site-a``: every scan on the nominal protocol (:data:`T1W_TAGS`);
    - ``site-b``: every scan with a wrong TR (2500 ms instead of 2300);
    - ``site-c``: a software upgrade halfway: scans from ``scans // 2`` on run
      ``syngo MR XA30`` instead of ``syngo MR E11``.

    Returns ``{site: [(zip path, the tags that differ from T1W_TAGS)]}`` in subject order.
    """
    root = Path(root)
    study: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for s, site in enumerate(('site-a', 'site-b', 'site-c')):
        study[site] = []
        for n in range(scans):
            changed: dict[str, Any] = {'InstitutionName': f'MIQA {site}',
                                       'StationName': f'MRC{s:04d}',
                                       'DeviceSerialNumber': f'{10001 + s}'}
            if site == 'site-b':
                changed['RepetitionTime'] = 2500.0
            if site == 'site-c' and n >= scans // 2:
                changed['SoftwareVersions'] = 'syngo MR XA30'
            changed['AcquisitionDate'] = f'202601{n + 10:02d}'
            path = series_zip(root / site / f'sub-{n + 1:02d}' / 't1.zip',
                              phantom(shape, seed=10 * s + n), tags=changed,
                              name=f'{site}-sub-{n + 1:02d}')
            study[site].append((path, changed))
    return study
