"""Whether a scan lies in the model's domain: its contrast, guessed from the header, the JSON
sidecar or the image itself, against ``model.json``'s ``domain``.

A model trained on T1-weighted heads scores a FLAIR or a BOLD series as confidently as a T1,
and those scores mean nothing. :func:`detect_contrast` says what a scan is, in this order:

1. ``header``: the BIDS suffix or a contrast word in the file name (``sub-01_T2w.nii.gz``,
   ``..._FLAIR-brain.nii.gz``, ``IXI012-HH-1211_T1.nii.gz``);
2. ``sidecar``: the scan's JSON sidecar (BIDS keys: ``ArterialSpinLabelingType``,
   ``TaskName``, ``DiffusionScheme``, ``SeriesDescription``, ``ScanningSequence``, the echo,
   repetition and inversion times);
3. ``dicom``: the same tags from the first file of a zipped DICOM series (pydicom when
   installed, else ITK's GDCM reader);
4. ``image``: the voxels, because ``scan7.nii.gz`` with no sidecar must still be judged:
   EPI-like resolution, then the order of the tissues deep in the head (T1: white matter is
   the bright bulk with dark CSF in the ventricles, so the intensities there lean to the dark
   side; T2, PD and diffusion b0: dark bulk, bright CSF) and, in a brain-extracted T1-like
   image, whether the cortex is darker than the white matter (not so in FLAIR). A whole-head
   FLAIR (no brain extraction) looks T1-like to this test: only its name, sidecar or DICOM
   tags put it out of scope.

The first that knows wins (a sidecar saying T2w beats a T1-looking image). A 4D series is out of
scope whatever its contrast (the model assesses single 3D volumes; its scores are of the first
volume). A contrast nobody could determine is out of scope ("contrast could not be
determined"): an assessment is only vouched for on what the model was trained on.

Core code: numpy and scipy (ITK, or pydicom when installed, only to read a zipped DICOM
header), no Girder, no torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np
from scipy import ndimage

from .quality_metrics import head_mask

T = TypeVar('T')

#: The contrasts a scan can be given (BIDS suffixes; ``unknown`` when no source could tell).
CONTRASTS = ('T1w', 'T2w', 'FLAIR', 'PD', 'dwi', 'bold', 'asl', 'unknown')
#: Where a contrast came from, in the order they are tried.
SOURCES = ('header', 'sidecar', 'dicom', 'image')

#: Words of a file name or series description, and the contrast each names (lower case).
_WORDS: dict[str, str] = {
    **dict.fromkeys(('t1w', 't1', 'mprage', 'mp2rage', 'spgr', 'fspgr', 'bravo', 't1c',
                     't1ce', 't1gd', 't1post', 't1wce'), 'T1w'),
    **dict.fromkeys(('t2w', 't2', 't2tse', 't2fse'), 'T2w'),
    **dict.fromkeys(('flair', 't2flair', 'tirm', 'darkfluid'), 'FLAIR'),
    **dict.fromkeys(('pd', 'pdw', 'pdt2'), 'PD'),
    **dict.fromkeys(('dwi', 'dti', 'dki', 'diffusion', 'adc', 'trace'), 'dwi'),
    **dict.fromkeys(('bold', 'fmri', 'func', 'rest', 'resting', 'restingstate'), 'bold'),
    **dict.fromkeys(('asl', 'pcasl', 'pasl', 'casl', 'perfusion', 'm0scan'), 'asl'),
}
_SPLIT = re.compile(r'[^0-9A-Za-z]+')
_IMAGE_ENDINGS = ('.nii.gz', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.mgh', '.zip')
_FOUR_D = re.compile(r'4D series of (\d+) volumes')

#: Image test. Voxels sampled for the tissue order (~6 ms) and, in a brain-extracted T1-like
#: image only, for its cortex (~25 ms: the rim needs finer voxels); the EPI in-plane spacing;
#: the tissue-order score's T1 and T2 thresholds (the gap between them is "unknown"); the
#: depths (share of the deepest point of the head mask) whose intensities are compared; and
#: the cortex-below-white-matter margin a brain-extracted T1 shows (a FLAIR's cortex is as
#: bright as its white matter). Chosen on the real scans in ../shared (MODEL_CARD.md).
SAMPLE_VOXELS = 1 << 15
CORTEX_VOXELS = 1 << 17
EPI_SPACING_MM = 2.5
T1_BELOW = -0.08
T2_ABOVE = 0.15
DEPTHS = (0.4, 0.5, 0.6)
CORTEX_MARGIN = 0.07
#: The largest mask taken for a brain (mL): an adult intracranial volume is 1.2-1.9 L, a whole
#: head 3 L or more.
BRAIN_MAX_ML = 2200.0


@dataclass(frozen=True)
class ContrastGuess:
    """What a scan was found to be.

    Args:
        contrast: one of :data:`CONTRASTS`.
        source: where it came from (:data:`SOURCES`), or ``none`` when nothing could tell.
        detail: one line on the evidence ("file name says T2w", "CSF bright: T2-like").
        volumes: volumes in the series (more than 1: a 4D series).
        modality: the modality a sidecar or DICOM header names ("MR", "CT"), or None.
        notes: one-line remarks on sources that could not be used (a sidecar that is not JSON).
    """

    contrast: str
    source: str
    detail: str
    volumes: int = 1
    modality: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scope:
    """Whether a scan is in the model's domain (the assessment's ``scope``).

    Args:
        in_scope: True when the model was trained on scans like this one.
        contrast: the scan's contrast (:data:`CONTRASTS`).
        reason: one line saying why, for the reviewer.
        source: where the contrast came from (:data:`SOURCES` or ``none``).
    """

    in_scope: bool
    contrast: str
    reason: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {'in_scope': self.in_scope, 'contrast': self.contrast, 'reason': self.reason,
                'source': self.source}


# ---- header: file name, sidecar, DICOM ----


def _stem(name: str) -> str:
    base = os.path.basename(name)
    lower = base.lower()
    for ending in _IMAGE_ENDINGS:
        if lower.endswith(ending):
            return base[:-len(ending)]
    return os.path.splitext(base)[0]


def words_contrast(text: str) -> str | None:
    """The one contrast the words of ``text`` name, or None (none, or several disagreeing).

    FLAIR beats T2 ("T2-FLAIR" is a FLAIR); words are split on anything but letters and digits.
    """
    found = {_WORDS[word] for word in _SPLIT.split(text.lower()) if word in _WORDS}
    if 'FLAIR' in found:
        found.discard('T2w')
    return found.pop() if len(found) == 1 else None


def name_contrast(path: str | os.PathLike) -> str | None:
    """The contrast the file's name says (BIDS suffix or a contrast word), or None."""
    return words_contrast(_stem(os.fspath(path)))


def sidecar_path(path: str | os.PathLike) -> str:
    """Where a scan's BIDS sidecar lies: beside it, named like it with ``.json``."""
    path = os.fspath(path)
    return os.path.join(os.path.dirname(path), _stem(path) + '.json')


def read_sidecar(path: str | os.PathLike) -> bytes | None:
    """The bytes of the sidecar beside a scan file (at most 1 MiB), or None without one."""
    try:
        with open(sidecar_path(path), 'rb') as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


def parse_sidecar(sidecar: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    """(the sidecar's JSON object or None, a one-line note when it could not be used)."""
    if sidecar is None or isinstance(sidecar, Mapping):
        return sidecar, None
    try:
        raw = json.loads(sidecar)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        return None, f'sidecar ignored: not JSON ({" ".join(str(exc).split())[:80]})'
    if not isinstance(raw, Mapping):
        return None, 'sidecar ignored: not a JSON object'
    return raw, None


def _seconds(value: Any) -> float | None:
    """A BIDS time in seconds (values over 100 are taken as DICOM milliseconds)."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return value / 1000.0 if value > 100 else value


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ' '.join(str(v) for v in value)
    return str(value) if value is not None else ''


def header_contrast(tags: Mapping[str, Any]) -> tuple[str, str] | None:
    """(contrast, why) from BIDS sidecar keys (a DICOM header is mapped to the same keys)."""
    if any(key in tags for key in ('ArterialSpinLabelingType', 'PostLabelingDelay', 'M0Type')):
        return 'asl', 'arterial spin labelling keys'
    if 'TaskName' in tags:
        return 'bold', f'a task ({_text(tags["TaskName"])[:30]})'
    if any(key in tags for key in ('DiffusionScheme', 'DiffusionBValue', 'bval')):
        return 'dwi', 'diffusion keys'
    for key in ('SeriesDescription', 'ProtocolName', 'PulseSequenceDetails', 'SequenceName'):
        contrast = words_contrast(_text(tags.get(key)))
        if contrast:
            return contrast, f'{key} {_text(tags[key])[:40]!r}'
    sequence = (_text(tags.get('ScanningSequence')) + ' '
                + _text(tags.get('PulseSequenceType'))).upper()
    te, tr = _seconds(tags.get('EchoTime')), _seconds(tags.get('RepetitionTime'))
    ti = _seconds(tags.get('InversionTime'))
    times = f'TR {tr:g} s, TE {te * 1000:g} ms' if te is not None and tr is not None else ''
    if re.search(r'\bEP\b|EPI|ECHO ?PLANAR', sequence):
        return 'unknown', 'an echo-planar sequence (functional, diffusion or perfusion)'
    if te is None or tr is None:
        return None
    if ti is not None and ti >= 1.5 and te >= 0.06:
        return 'FLAIR', f'{times}, TI {ti:g} s'
    if te <= 0.015 and (tr <= 0.9 or (ti is not None and 0.3 <= ti <= 1.3 and tr <= 3.5)):
        return 'T1w', times + (f', TI {ti:g} s' if ti is not None else '')
    if te >= 0.06 and tr >= 2.0:
        return 'T2w', times
    if 0.005 <= te <= 0.035 and tr >= 2.0 and ti is None:
        return 'PD', times
    return None


#: DICOM tags read from a zipped series, under the sidecar keys :func:`header_contrast` reads.
DICOM_TAGS = {'0008|0060': 'Modality', '0008|103e': 'SeriesDescription',
              '0018|1030': 'ProtocolName', '0018|0024': 'SequenceName',
              '0018|0020': 'ScanningSequence', '0018|0080': 'RepetitionTime',
              '0018|0081': 'EchoTime', '0018|0082': 'InversionTime'}
_DICOM_TIMES = ('RepetitionTime', 'EchoTime', 'InversionTime')
#: The largest zip member opened for its DICOM header.
_DICOM_MEMBER_BYTES = 64 << 20


def _bids_tags(raw: Mapping[str, Any]) -> dict[str, Any]:
    """DICOM values (by keyword) as a sidecar has them: text, and times in seconds."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or str(value).strip() == '':
            continue
        if key in _DICOM_TIMES:
            try:
                out[key] = float(str(value).split('\\')[0]) / 1000.0  # DICOM: milliseconds
            except ValueError:
                continue
        else:
            out[key] = _text(value).strip()
    return out


def _itk_dicom_header(path: str) -> dict[str, Any] | None:
    """The :data:`DICOM_TAGS` of one file through ITK's GDCM reader, or None if not DICOM."""
    import itk

    io = itk.GDCMImageIO.New()
    if not io.CanReadFile(path):
        return None
    io.SetFileName(path)
    try:
        io.ReadImageInformation()
    except RuntimeError:
        return None
    meta = io.GetMetaDataDictionary()
    return {key: str(meta[tag]) for tag, key in DICOM_TAGS.items() if meta.HasKey(tag)}


def _pydicom_header(fh) -> dict[str, Any] | None:
    """The :data:`DICOM_TAGS` of one file through pydicom (headers only), or None."""
    import pydicom

    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
    except Exception:  # pydicom raises several types for what is not DICOM
        return None
    return {key: ds.get(key) for key in DICOM_TAGS.values()}


def dicom_tags(path: str | os.PathLike) -> dict[str, Any] | None:
    """Tags of the first DICOM file in a zip, under sidecar keys: with pydicom when installed,
    else ITK's GDCM reader (the one ``image_io`` reads the series with); None when no member
    is DICOM or the archive cannot be read."""
    import tempfile

    try:
        import pydicom  # noqa: F401
        reader = 'pydicom'
    except ImportError:
        reader = 'itk'
    try:
        with tempfile.TemporaryDirectory(prefix='miqa-scope-') as tmp:
            def read(fh) -> dict[str, Any] | None:
                if reader == 'pydicom':
                    return _pydicom_header(fh)
                local = os.path.join(tmp, 'member')
                with open(local, 'wb') as out:
                    out.write(fh.read())
                return _itk_dicom_header(local)

            found = first_zip_member(path, read)
    except (OSError, zipfile.BadZipFile, RuntimeError, ImportError):
        return None
    return _bids_tags(found[1]) if found else None


def first_zip_member(path: str | os.PathLike | zipfile.ZipFile,
                     read: Callable[[IO[bytes]], T | None]) -> tuple[zipfile.ZipInfo, T] | None:
    """(the zip member, what ``read`` made of it) for the first file member that ``read``
    accepts (given the open member, it returns None for what it cannot use), or None.

    ``path`` may be an open archive (its directory is then read once by the caller). Members
    over 64 MiB are skipped. OSError and zipfile.BadZipFile propagate."""
    if not isinstance(path, zipfile.ZipFile):
        with zipfile.ZipFile(path) as archive:
            return first_zip_member(archive, read)
    for member in path.infolist():
        if member.is_dir() or member.file_size > _DICOM_MEMBER_BYTES:
            continue
        with path.open(member) as fh:
            raw = read(fh)
        if raw is not None:
            return member, raw
    return None


# ---- the image itself ----


def _sample(array: np.ndarray, spacing: Sequence[float], voxels: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Every n-th voxel per axis, strides chosen in millimetres so that thin axes keep their
    slices and at most ``voxels`` remain; also the sampled spacing."""
    spacing = np.asarray(spacing, dtype=np.float64)
    target = float(spacing.min())
    while True:
        strides = np.maximum(1, np.floor(target / spacing + 1e-6)).astype(int)
        count = math.prod(math.ceil(s / k) for s, k in zip(array.shape, strides, strict=True))
        if count <= voxels:
            break
        target *= 1.1
    part = array[::strides[0], ::strides[1], ::strides[2]]
    return np.ascontiguousarray(part), spacing * strides


def _quantile_skew(values: np.ndarray) -> float:
    """Bowley's skewness ``(p90 + p10 - 2 p50) / (p90 - p10)``: -1..1, robust to outliers."""
    p10, p50, p90 = np.percentile(values, (10.0, 50.0, 90.0))
    spread = p90 - p10
    return float((p90 + p10 - 2 * p50) / spread) if spread > 0 else 0.0


@dataclass(frozen=True)
class ImageEvidence:
    """What :func:`image_evidence` measured.

    Args:
        tissue_order: mean Bowley skewness deep in the head: negative when the bulk is bright
            and the CSF dark (T1), positive when the bulk is dark and the CSF bright (T2).
        brain_extracted: True when the air around the mask is one constant value and the
            mask holds no more than a brain (:data:`BRAIN_MAX_ML`): a skull-stripped or
            brain-extracted image, whose mask's rim is the cortex (a whole head with zeroed
            air has scalp there).
        head_ml: the head mask's volume in millilitres.
    """

    tissue_order: float
    brain_extracted: bool
    head_ml: float = 0.0


def _head(array: np.ndarray, spacing: Sequence[float], voxels: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(sampled voxels, head mask, depth in mm inside the mask, mask volume in mL), or None
    without a head."""
    part, step = _sample(np.asarray(array), spacing, voxels)
    mask = head_mask(part)
    count = int(mask.sum())
    if count < 64:
        return None
    return (part, mask, ndimage.distance_transform_edt(mask, sampling=step),
            count * float(np.prod(step)) / 1000.0)


def image_evidence(array: np.ndarray, spacing: Sequence[float],
                   voxels: int = SAMPLE_VOXELS) -> ImageEvidence | None:
    """The tissue order of the image (sampled to ``voxels``), or None without a head."""
    head = _head(array, spacing, voxels)
    if head is None:
        return None
    part, mask, depth, head_ml = head
    deepest = float(depth.max())
    order = [_quantile_skew(core) for core in (part[depth > share * deepest]
                                               for share in DEPTHS) if core.size >= 16]
    if not order:
        return None
    air = part[~ndimage.binary_dilation(mask, iterations=2)]
    extracted = (bool(air.size) and float(np.mean(air == part.min())) >= 0.95
                 and head_ml <= BRAIN_MAX_ML)
    return ImageEvidence(float(np.mean(order)), extracted, head_ml)


def cortex_below_wm(array: np.ndarray, spacing: Sequence[float],
                    voxels: int = CORTEX_VOXELS) -> float | None:
    """How much darker the rim of a brain-extracted head (2..8 mm deep: the cortex) is than
    its depths (white matter), over the head's 1..99 % range; sampled finely enough to see the
    rim. About +0.3 in a T1, 0 in a FLAIR; None without a head."""
    head = _head(array, spacing, voxels)
    if head is None:
        return None
    part, mask, depth, _ = head
    low, high = np.percentile(part[mask], (1.0, 99.0))
    rim = part[(depth > 2.0) & (depth < 8.0)]
    deep = part[depth > 0.5 * float(depth.max())]
    if not (high > low and rim.size and deep.size):
        return None
    return float((np.median(deep) - np.median(rim)) / (high - low))


def image_contrast(array: np.ndarray, spacing: Sequence[float]) -> tuple[str, str]:
    """(contrast, why) judged from the voxels alone; ``unknown`` when the evidence is weak."""
    in_plane = sorted(float(s) for s in spacing)[1]
    if in_plane >= EPI_SPACING_MM:
        return 'unknown', (f'EPI-like resolution ({in_plane:.1f} mm in-plane): a functional, '
                           'diffusion or perfusion volume?')
    evidence = image_evidence(array, spacing)
    if evidence is None:
        return 'unknown', 'no head found in the image'
    score = f'tissue order {evidence.tissue_order:+.2f}'
    if evidence.tissue_order <= T1_BELOW:
        if evidence.brain_extracted:
            below = cortex_below_wm(array, spacing)
            if below is not None and below < CORTEX_MARGIN:
                return 'FLAIR', (f'image: CSF dark but cortex as bright as white matter '
                                 f'({score}, cortex {below:+.2f}): FLAIR-like')
        return 'T1w', f'image: bright white matter, dark CSF ({score}): T1-like'
    if evidence.tissue_order >= T2_ABOVE:
        return 'T2w', f'image: dark bulk, bright CSF ({score}): T2-like (T2w, PD or a b0)'
    return 'unknown', f'image: tissue order unclear ({score})'


# ---- the decision ----


def series_volumes(volume: Any) -> int:
    """Volumes in the scan's series, from the reader's note (``image_io``: "4D series of N")."""
    match = _FOUR_D.search(getattr(volume, 'note', None) or '')
    return int(match.group(1)) if match else 1


def detect_contrast(path: str | os.PathLike | None, volume: Any, sidecar: Any = None
                    ) -> ContrastGuess:
    """The scan's contrast: from its name, its sidecar, its DICOM tags, else its voxels.

    Args:
        path: the file as uploaded (its name is read; a zip is opened for DICOM tags).
        volume: the :class:`~miqa_worker.image_io.ScanVolume` read from it.
        sidecar: the JSON sidecar beside the image: a parsed object, its text or bytes, or None;
            text that is not a JSON object is noted and ignored, never raised.
    """
    volumes = series_volumes(volume)
    tags, note = parse_sidecar(sidecar)
    notes = (note,) if note else ()
    modality = _text(tags.get('Modality')) or None if tags else None
    name = os.fspath(path) if path is not None else ''

    def guess(contrast: str, source: str, detail: str) -> ContrastGuess:
        return ContrastGuess(contrast, source, detail, volumes, modality, notes)

    contrast = name_contrast(name) if name else None
    if contrast:
        return guess(contrast, 'header', f'file name says {contrast}')
    if tags:
        found = header_contrast(tags)
        if found:
            return guess(found[0], 'sidecar', f'sidecar: {found[1]}')
    if name.lower().endswith('.zip'):
        dicom = dicom_tags(name)
        if dicom:
            modality = modality or dicom.get('Modality')
            found = header_contrast(dicom)
            if found:
                return guess(found[0], 'dicom', f'DICOM: {found[1]}')
    if volumes > 1:  # the first volume of a series says little of what the series is
        return guess('unknown', 'none', f'4D series of {volumes} volumes, no header names it')
    contrast, why = image_contrast(volume.array, volume.spacing)
    return guess(contrast, 'image' if contrast != 'unknown' else 'none', why)


def _domain_name(contrast: str) -> str:
    """A domain contrast compared as a scan's is ("DWI-b0" is a dwi)."""
    return contrast.split('-')[0].lower()


def in_scope(domain: Any, guess: ContrastGuess, volume: Any = None) -> Scope:
    """Whether a scan of ``guess`` is in ``domain`` (``model_spec.Domain``), and why.

    Out: a 4D series, another modality, a contrast the domain does not list, and a contrast
    that could not be determined.
    """
    def scope(inside: bool, reason: str) -> Scope:
        extra = '; '.join(guess.notes)
        return Scope(inside, guess.contrast, f'{reason}; {extra}' if extra else reason,
                     guess.source)

    listed = ', '.join(domain.contrasts)
    volumes = max(guess.volumes, series_volumes(volume) if volume is not None else 1)
    if volumes > 1:
        return scope(False, f'4D series of {volumes} volumes: the model assesses single 3D '
                            f'volumes (scores are of the first volume)')
    if guess.modality and guess.modality.upper() != str(domain.modality).upper():
        return scope(False, f'modality {guess.modality} is outside the model\'s domain '
                            f'({domain.modality})')
    if guess.contrast == 'unknown':
        return scope(False, f'contrast could not be determined ({guess.detail})')
    if _domain_name(guess.contrast) not in {_domain_name(c) for c in domain.contrasts}:
        return scope(False, f'outside the model\'s domain ({guess.contrast}; trained on '
                            f'{listed}): {guess.detail}')
    return scope(True, f'{guess.contrast}, in the model\'s domain: {guess.detail}')


def assess_scope(domain: Any, path: str | os.PathLike | None, volume: Any,
                 sidecar: Any = None) -> dict[str, Any]:
    """The assessment's ``scope``: ``{in_scope, contrast, reason, source}``; never raises on
    the scan (a failure of the test itself is reported as an unknown contrast)."""
    try:
        guess = detect_contrast(path, volume, sidecar)
    except (ValueError, MemoryError, OSError) as exc:
        guess = ContrastGuess('unknown', 'none', f'contrast test failed: '
                              f'{" ".join(str(exc).split())[:80]}', series_volumes(volume))
    return in_scope(domain, guess, volume).to_json()
