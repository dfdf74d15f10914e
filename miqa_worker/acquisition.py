"""A scan's acquisition parameters, the ones a protocol names, from its headers (issue #22).

Sources, in the order they win for each parameter:

1. ``dicom``: the tags of the first DICOM file of a zipped series (pydicom, headers only);
2. ``sidecar``: the scan's BIDS JSON sidecar (the one scheduling sends with the job);
3. the image header: ``nifti`` (pixdim, dims, affine, ``descrip`` of dcm2niix, TR in pixdim[4]
   of a 4D series), ``nrrd`` (sizes, space directions, ``key:=value`` fields), ``mha``
   (DimSize, ElementSpacing, TransformMatrix), ``mgh``; geometry (``VoxelSize``, ``Matrix``,
   ``Orientation``) comes from the header of the file whose voxels are assessed first.

Keys and units are BIDS' (times in seconds, ``FlipAngle`` in degrees, sizes in mm); what no
source knows is None, never an error. A sidecar that is not JSON, or that names another scan
(its ``IntendedFor``/``Sources``/file name fields name another file, or its series description
disagrees with the DICOM header or names another contrast than the file name), is left out and
said in ``problems``; the assessment goes on. Core code: no Girder import.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .scope import first_zip_member, name_contrast, parse_sidecar, sidecar_path, words_contrast

#: Every parameter, in the order tables show them.
PARAMETERS = (
    'Manufacturer', 'ManufacturersModelName', 'SoftwareVersions', 'MagneticFieldStrength',
    'SeriesDescription', 'ProtocolName', 'ScanningSequence', 'SequenceVariant', 'SequenceName',
    'MRAcquisitionType', 'RepetitionTime', 'EchoTime', 'InversionTime', 'FlipAngle',
    'VoxelSize', 'Matrix', 'SliceThickness', 'Orientation', 'AcquisitionDate',
    'PixelBandwidth', 'ParallelReductionFactorInPlane', 'PhaseEncodingDirection',
    'ReceiveCoilName', 'InstitutionName', 'StationName', 'DeviceSerialNumber')
#: Those that are numbers (compared with a tolerance); lists of numbers: VoxelSize, Matrix.
NUMERIC = ('MagneticFieldStrength', 'RepetitionTime', 'EchoTime', 'InversionTime', 'FlipAngle',
           'SliceThickness', 'PixelBandwidth', 'ParallelReductionFactorInPlane')
SECONDS = ('RepetitionTime', 'EchoTime', 'InversionTime')
GEOMETRY = ('VoxelSize', 'Matrix', 'Orientation')

#: DICOM keyword -> parameter, where the names differ (the others are the same keyword).
_DICOM_NAMES = {'ManufacturerModelName': 'ManufacturersModelName',
                'InPlanePhaseEncodingDirection': 'PhaseEncodingDirection'}
_DICOM_KEYWORDS = [k for k in PARAMETERS if k not in (
    'ManufacturersModelName', 'PhaseEncodingDirection', 'VoxelSize', 'Matrix', 'Orientation',
    'AcquisitionDate')] + list(_DICOM_NAMES)
_DIRECTION = {'ROW': 'i', 'COL': 'j'}  # DICOM in-plane phase encoding, polarity unknown
#: Sidecar fields that name the image file a sidecar is about.
_FILE_FIELDS = ('IntendedFor', 'Sources', 'FileName', 'Filename', 'filename', 'ImageFile')


def empty() -> dict[str, Any]:
    """A result that knows nothing: every parameter None."""
    return {'parameters': dict.fromkeys(PARAMETERS), 'sources': {}, 'problems': []}


def _number(value: Any, scale: float = 1.0) -> float | None:
    """A finite float (the first of a multi-value), scaled, to 6 significant digits; or None."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == 'MultiValue':
        value = value[0] if len(value) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value) * scale
    except (TypeError, ValueError):
        return None
    return float(f'{number:.6g}') if math.isfinite(number) else None


def _text(value: Any, join: str = ' ') -> str | None:
    """A stripped string (multi-values joined), or None when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == 'MultiValue':
        value = join.join(str(v).strip() for v in value)
    text = ' '.join(str(value).split())
    return text or None


def _date(value: Any) -> str | None:
    """An ISO date from DICOM ``YYYYMMDD`` or an ISO date/datetime; None otherwise."""
    text = _text(value)
    if not text:
        return None
    for form, size in (('%Y%m%d', 8), ('%Y-%m-%d', 10)):
        try:
            return dt.datetime.strptime(text[:size], form).date().isoformat()
        except ValueError:
            continue
    return None


def _sidecar_seconds(value: Any) -> float | None:
    """A sidecar's time: BIDS seconds (over 100 it can only be milliseconds)."""
    number = _number(value)
    if number is None or number < 0:
        return None
    return _number(number / 1000.0) if number > 100 else number


def axis_codes(axes_ras: np.ndarray) -> str | None:
    """Axis codes ("RAS", "LPS", ...) of voxel axes given as RAS direction columns (3x3):
    each axis named by where it points, as nibabel's ``aff2axcodes``; None when degenerate."""
    axes = np.asarray(axes_ras, float)
    if axes.shape != (3, 3) or not np.isfinite(axes).all():
        return None
    codes, used = '', set()
    for column in axes.T:
        order = np.argsort(-np.abs(column))
        world = next((int(w) for w in order if w not in used), None)
        if world is None or column[world] == 0:
            return None
        used.add(world)
        codes += ('LR', 'PA', 'IS')[world][int(column[world] > 0)]
    return codes


# ---- DICOM ----


def _dicom_header(fh) -> Any:
    import pydicom

    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
    except Exception:  # pydicom raises several types for what is not DICOM
        return None
    return ds if 'SOPClassUID' in ds or 'Modality' in ds else None


def dicom_parameters(path: str | os.PathLike, image: Any = None
                     ) -> tuple[dict[str, Any], str | None]:
    """(parameters, problem) from the first DICOM file of a zipped series; ({}, why) when the
    zip cannot be read or holds no DICOM file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            found = first_zip_member(archive, _dicom_header)
            if not found:
                return {}, None
            member, ds = found
            alike = sum(1 for m in archive.infolist()
                        if not m.is_dir() and m.file_size == member.file_size)
    except ImportError:
        return {}, 'DICOM tags not read: pydicom is not installed'
    except (OSError, zipfile.BadZipFile) as exc:
        return {}, f'DICOM tags not read: {" ".join(str(exc).split())[:80]}'
    out: dict[str, Any] = {}
    for keyword in _DICOM_KEYWORDS:
        value = ds.get(keyword)
        name = _DICOM_NAMES.get(keyword, keyword)
        if name in SECONDS:
            out[name] = _number(value, 0.001)  # DICOM: milliseconds
        elif name in NUMERIC:
            out[name] = _number(value)
        elif keyword in ('ScanningSequence', 'SequenceVariant'):
            out[name] = _text(value, join='_')  # as dcm2niix writes them into BIDS
        elif name == 'PhaseEncodingDirection':
            out[name] = _DIRECTION.get(_text(value) or '')
        else:
            out[name] = _text(value)
    out['AcquisitionDate'] = next(
        (d for d in map(_date, (ds.get('AcquisitionDate'), ds.get('SeriesDate'),
                                ds.get('StudyDate'))) if d), None)
    spacing = ds.get('PixelSpacing')
    slices = _number(ds.get('SpacingBetweenSlices')) or out.get('SliceThickness')
    if spacing is not None and len(spacing) == 2:
        out['VoxelSize'] = [_number(spacing[1]), _number(spacing[0]), slices]
    rows, columns = ds.get('Rows'), ds.get('Columns')
    if rows and columns:
        frames = int(ds.get('NumberOfFrames') or 0) or None
        if frames is None and image is not None and getattr(image, 'array', None) is not None:
            frames = int(round(image.array.size / (int(rows) * int(columns)))) or None
        if frames is None:  # members of the first file's size: the slices of a series
            frames = alike or None
        out['Matrix'] = [int(columns), int(rows), frames]
    cosines = ds.get('ImageOrientationPatient')
    if cosines is not None and len(cosines) == 6:
        row, column = np.array(cosines[:3], float), np.array(cosines[3:], float)
        lps = np.stack([row, column, np.cross(row, column)], axis=1)
        out['Orientation'] = axis_codes(lps * np.array([[-1.0], [-1.0], [1.0]]))
    return {k: v for k, v in out.items() if v is not None}, None


# ---- image headers ----


def _nifti(path: str) -> dict[str, Any]:
    import nibabel as nib

    image = nib.load(path)
    header = image.header
    dims = [int(d) for d in header['dim'][1:1 + int(header['dim'][0])]]
    zooms = [float(z) for z in header.get_zooms()]
    affine = image.affine
    out: dict[str, Any] = {
        'VoxelSize': [_number(z) for z in zooms[:3]], 'Matrix': dims[:3],
        'SliceThickness': _number(zooms[2]) if len(zooms) > 2 else None,
        'Orientation': axis_codes(affine[:3, :3]),
    }
    if len(dims) > 3 and dims[3] > 1 and len(zooms) > 3 and zooms[3] > 0:
        unit = header.get_xyzt_units()[1]
        scale = {'sec': 1.0, 'msec': 1e-3, 'usec': 1e-6}.get(unit)
        if scale is not None:  # a TR over 100 "seconds" is milliseconds (FSL 3.3 wrote so)
            tr = _number(zooms[3], scale)
            out['RepetitionTime'] = _number(tr / 1000.0) if tr is not None and tr > 100 else tr
    descrip = _text(bytes(header['descrip']).split(b'\0')[0].decode('latin-1'))
    for key, value in re.findall(r'\b(TE|TR|TI|FA)\s*=\s*([-+0-9.eE]+)', descrip or ''):
        name = {'TE': 'EchoTime', 'TR': 'RepetitionTime', 'TI': 'InversionTime',
                'FA': 'FlipAngle'}[key]
        out.setdefault(name, None)
        if out[name] is None:  # dcm2niix writes milliseconds
            out[name] = _number(value, 0.001 if name in SECONDS else 1.0)
    return out


def _mgh(path: str) -> dict[str, Any]:
    import nibabel as nib

    image = nib.load(path)
    header = image.header
    zooms = [float(z) for z in header.get_zooms()[:3]]
    tr, te, ti, flip = (float(header[k]) for k in ('tr', 'te', 'ti', 'flip_angle'))
    return {'VoxelSize': [_number(z) for z in zooms], 'Matrix': list(image.shape[:3]),
            'SliceThickness': _number(zooms[2]), 'Orientation': axis_codes(image.affine[:3, :3]),
            'RepetitionTime': _number(tr, 1e-3) if tr > 0 else None,
            'EchoTime': _number(te, 1e-3) if te > 0 else None,
            'InversionTime': _number(ti, 1e-3) if ti > 0 else None,
            'FlipAngle': _number(math.degrees(flip)) if flip > 0 else None}


def _text_header(path: str, limit: int = 1 << 16) -> list[str]:
    """The text lines before a NRRD's blank line (or a MetaImage's ElementDataFile)."""
    with open(path, 'rb') as fh:
        head = fh.read(limit)
    text = head.split(b'\n\n', 1)[0].split(b'\r\n\r\n', 1)[0].decode('latin-1')
    return text.splitlines()


def _vectors(text: str) -> list[list[float] | None]:
    """NRRD ``space directions``: "(1,0,0) none (0,0,2)" -> [[1, 0, 0], None, [0, 0, 2]]."""
    out: list[list[float] | None] = []
    for token in re.findall(r'\(([^)]*)\)|none', text):
        out.append([float(v) for v in token.split(',')] if token else None)
    return out


_SPACE_FLIP = {'left-posterior-superior': (-1, -1, 1), 'lps': (-1, -1, 1),
               'right-anterior-superior': (1, 1, 1), 'ras': (1, 1, 1),
               'left-anterior-superior': (-1, 1, 1), 'las': (-1, 1, 1)}


def _nrrd(path: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    pairs: dict[str, str] = {}
    for line in _text_header(path)[1:]:
        if line.startswith('#'):
            continue
        if ':=' in line:
            key, value = line.split(':=', 1)
            pairs[key.strip()] = value.strip()
        elif ':' in line:
            key, value = line.split(':', 1)
            fields[key.strip().lower()] = value.strip()
    sizes = [int(s) for s in fields.get('sizes', '').split()]
    directions = _vectors(fields.get('space directions', ''))
    spatial = [i for i, d in enumerate(directions) if d is not None]
    out: dict[str, Any] = {}
    if spatial and len(directions) == len(sizes):
        axes = np.array([directions[i] for i in spatial], float).T  # columns: axes
        out['VoxelSize'] = [_number(np.linalg.norm(axes[:, i])) for i in range(axes.shape[1])]
        out['Matrix'] = [sizes[i] for i in spatial]
        flip = _SPACE_FLIP.get(fields.get('space', '').lower())
        if flip is not None and axes.shape == (3, 3):
            out['Orientation'] = axis_codes(axes * np.array(flip, float)[:, None])
    elif 'spacings' in fields:
        out['VoxelSize'] = [_number(v) for v in fields['spacings'].split() if v != 'nan']
        out['Matrix'] = sizes
    if out.get('VoxelSize') and len(out['VoxelSize']) >= 3:
        out['SliceThickness'] = out['VoxelSize'][2]
    out.update(_named_pairs(pairs))
    return out


def _mha(path: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    for line in _text_header(path):
        if '=' not in line:
            continue
        key, value = line.split('=', 1)
        fields[key.strip()] = value.strip()
        if key.strip() == 'ElementDataFile':
            break
    dims = int(fields.get('NDims', '0') or 0)
    out: dict[str, Any] = {}
    if 'DimSize' in fields:
        out['Matrix'] = [int(v) for v in fields['DimSize'].split()][:3]
    spacing = fields.get('ElementSpacing') or fields.get('ElementSize')
    if spacing:
        out['VoxelSize'] = [_number(v) for v in spacing.split()][:3]
        if len(out['VoxelSize']) >= 3:
            out['SliceThickness'] = out['VoxelSize'][2]
    matrix = next((fields[k] for k in ('TransformMatrix', 'Orientation', 'Rotation')
                   if k in fields), None)
    if matrix and dims >= 3:
        values = [float(v) for v in matrix.split()]
        if len(values) == dims * dims:
            axes = np.array(values).reshape(dims, dims)[:3, :3].T  # row i: axis i (ITK)
            out['Orientation'] = axis_codes(axes * np.array([[-1.0], [-1.0], [1.0]]))
    out.update(_named_pairs(fields))
    return out


def _named_pairs(pairs: Mapping[str, str]) -> dict[str, Any]:
    """Header fields named like a parameter (``RepetitionTime:=2.3`` in a NRRD), BIDS units."""
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key in PARAMETERS and key not in GEOMETRY:
            out[key] = (_sidecar_seconds(value) if key in SECONDS else
                        _number(value) if key in NUMERIC else _text(value))
    return out


def header_parameters(path: str | os.PathLike) -> tuple[dict[str, Any], str | None, str | None]:
    """(parameters, source name, problem) from an image file's own header."""
    path = os.fspath(path)
    lower = path.lower()
    readers = (('.nii.gz', 'nifti', _nifti), ('.nii', 'nifti', _nifti), ('.nrrd', 'nrrd', _nrrd),
               ('.nhdr', 'nrrd', _nrrd), ('.mha', 'mha', _mha), ('.mhd', 'mha', _mha),
               ('.mgz', 'mgh', _mgh), ('.mgh', 'mgh', _mgh))
    for ending, source, reader in readers:
        if lower.endswith(ending):
            try:
                found = reader(path)
            except (OSError, ValueError, IndexError, KeyError, EOFError, gzip.BadGzipFile,
                    np.linalg.LinAlgError) as exc:
                return {}, source, (f'{source} header not read: '
                                    f'{" ".join(str(exc).split())[:80]}')
            return {k: v for k, v in found.items() if v is not None}, source, None
    return {}, None, None


# ---- sidecar ----


def _names_of(value: Any) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values if isinstance(v, str) and v.strip()]


def _stem(name: str) -> str:
    base = os.path.basename(name.split(':', 1)[-1] if name.startswith('bids:') else name)
    for ending in ('.nii.gz', '.json', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.zip'):
        if base.lower().endswith(ending):
            return base[:-len(ending)]
    return base


def other_scan(tags: Mapping[str, Any], path: str | os.PathLike | None,
               dicom: Mapping[str, Any]) -> str | None:
    """Why a sidecar is about another scan than ``path`` (None when nothing says so)."""
    stem = _stem(os.fspath(path)) if path is not None else None
    for field in _FILE_FIELDS:
        names = _names_of(tags.get(field))
        if names and stem and not any(_stem(n) == stem for n in names):
            return f'its {field} names {names[0][:60]!r}'
    for field in ('SeriesDescription', 'ProtocolName'):
        mine, theirs = _text(tags.get(field)), dicom.get(field)
        if mine and theirs and mine != theirs:
            return f'its {field} {mine[:40]!r} is not the DICOM header\'s {theirs[:40]!r}'
    named = name_contrast(path) if path is not None else None
    for field in ('SeriesDescription', 'ProtocolName'):
        said = words_contrast(_text(tags.get(field)) or '')
        if named and said and said != named:
            return f'its {field} {_text(tags[field])[:40]!r} is a {said}, the file name a {named}'
    return None


def sidecar_parameters(tags: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters from a BIDS sidecar's keys (BIDS units already)."""
    out: dict[str, Any] = {}
    for key in PARAMETERS:
        if key in tags and key not in ('AcquisitionDate', 'Orientation', 'Matrix', 'VoxelSize'):
            value = tags[key]
            out[key] = (_sidecar_seconds(value) if key in SECONDS else
                        _number(value) if key in NUMERIC else _text(value))
    for key in ('ScanningSequence', 'SequenceVariant'):  # "GR\\IR" as DICOM, "GR_IR" as BIDS
        if isinstance(out.get(key), str):
            out[key] = out[key].replace('\\', '_')
    out['AcquisitionDate'] = next((d for d in map(_date, (
        tags.get('AcquisitionDate'), tags.get('AcquisitionDateTime'), tags.get('SeriesDate'),
        tags.get('StudyDate'))) if d), None)
    return {k: v for k, v in out.items() if v is not None}


# ---- the whole ----


def acquisition_parameters(path: str | os.PathLike | None, sidecar: Any = None,
                           image: Any = None) -> dict[str, Any]:
    """A scan's acquisition parameters from its headers and sidecar.

    Args:
        path: the file as uploaded (a zipped DICOM series, NIfTI, NRRD, MHA, MGH); None when
            only a sidecar is known.
        sidecar: its BIDS JSON sidecar: a parsed object, its text or bytes, or None.
        image: the :class:`~miqa_worker.image_io.ScanVolume` read from it, when there is one
            (its geometry fills what the headers leave unknown).

    Returns:
        ``{'parameters': {Key: value | None}, 'sources': {Key: source}, 'problems': [str]}``.
    """
    result = empty()
    found: dict[str, tuple[Any, str]] = {}
    problems: list[str] = result['problems']

    def offer(values: Mapping[str, Any], source: str, keys=None) -> None:
        for key, value in values.items():
            if value is not None and key not in found and (keys is None or key in keys):
                found[key] = (value, source)

    dicom: dict[str, Any] = {}
    header: dict[str, Any] = {}
    header_source = None
    if path is not None:
        if os.fspath(path).lower().endswith('.zip'):
            dicom, problem = dicom_parameters(path, image)
            if problem:
                problems.append(problem)
        else:
            header, header_source, problem = header_parameters(path)
            if problem:
                problems.append(problem)
    offer(dicom, 'dicom')
    if header_source:
        offer(header, header_source, GEOMETRY)  # the voxels' own geometry before a sidecar's
    tags, note = parse_sidecar(sidecar)
    name = os.path.basename(sidecar_path(path)) if path is not None else 'sidecar.json'
    if note:
        problems.append(note.replace('sidecar', f'sidecar {name}', 1))
    elif tags is not None:
        why = other_scan(tags, path, dicom)
        if why:
            problems.append(f'sidecar {name} names another scan ({why}): its values are not used')
        else:
            offer(sidecar_parameters(tags), 'sidecar')
    if header_source:
        offer(header, header_source)
    if image is not None and getattr(image, 'array', None) is not None:
        offer({'VoxelSize': [_number(s) for s in image.spacing],
               'Matrix': [int(s) for s in image.array.shape[:3]],
               'Orientation': getattr(image, 'original_orientation', None) or None}, 'image')
    for key, (value, source) in found.items():
        result['parameters'][key] = value
        result['sources'][key] = source
    return result
