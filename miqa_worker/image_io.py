"""Read a scan with ITK into a float32 array in canonical RAS voxel order, with clear refusals.

Formats: NIfTI (.nii, .nii.gz), NRRD/NHDR, MetaImage (.mha/.mhd), MGH/MGZ and a zipped DICOM
series (.zip). The array is indexed ``[x, y, z]`` where voxel axes increase toward the
patient's Right, Anterior and Superior (what nibabel's ``as_closest_canonical`` gives): the
closest permutation/flip of the stored axes, without resampling, so oblique scans stay oblique.

Every refusal is an :class:`ImageError` whose message is one line saying why.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

#: Hard upper bound on the voxels of the assessed 3D volume (1024^3 float32 = 4 GiB).
HARD_MAX_VOXELS = 1024 ** 3
#: Bytes of memory the pipeline needs per voxel, about: native buffer, float32 copy, rescaled
#: copy and tiles (the tiles overlap a little).
BYTES_PER_VOXEL_ESTIMATE = 16
#: Default largest total uncompressed size of a zipped DICOM series we extract (bytes); the
#: worker's ``MIQA_MAX_ARCHIVE_BYTES`` sets another.
DEFAULT_MAX_ARCHIVE_BYTES = 2 * 1024 ** 3


def max_archive_bytes() -> int:
    """The most a zip archive may expand to on the worker's disk: ``MIQA_MAX_ARCHIVE_BYTES``
    (a positive number of bytes), else 2 GiB."""
    env = os.environ.get('MIQA_MAX_ARCHIVE_BYTES', '').strip()
    if env:
        try:
            value = int(env)
            if value > 0:
                return value
        except ValueError:
            pass
        logger.warning('ignoring MIQA_MAX_ARCHIVE_BYTES=%r (not a positive number)', env)
    return DEFAULT_MAX_ARCHIVE_BYTES


class ImageError(ValueError):
    """A file that cannot be assessed; the message is one line saying why."""


@dataclass
class ScanVolume:
    """A 3D scan as the model sees it: float32 ``[x, y, z]`` in canonical RAS voxel order."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    original_orientation: str
    source_format: str
    note: str | None = None
    shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.array.shape)  # type: ignore[assignment]


def _itk():
    """Import ITK lazily (the Girder server imports this package without ITK)."""
    import itk

    global _itk_configured
    if not _itk_configured:
        itk.ProcessObject.SetGlobalWarningDisplay(False)  # warnings go to stderr, not to us
        _itk_configured = True
    return itk


_itk_configured = False


def max_voxels_bound(max_voxels: int | None = None) -> int:
    """The voxel limit in force: the smallest of 1024^3, ``MIQA_MAX_VOXELS`` and the argument."""
    bound = HARD_MAX_VOXELS
    env = os.environ.get('MIQA_MAX_VOXELS', '').strip()
    if env:
        try:
            bound = min(bound, int(float(env)))
        except ValueError:
            logger.warning('ignoring MIQA_MAX_VOXELS=%r (not a number)', env)
    if max_voxels is not None:
        bound = min(bound, int(max_voxels))
    return bound


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable), or None when unknown."""
    try:
        with open('/proc/meminfo') as fh:
            for line in fh:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _format_shape(shape) -> str:
    return '×'.join(str(int(s)) for s in shape)


def _check_size(shape3: tuple[int, ...], total_voxels: int, max_voxels: int | None) -> None:
    """Refuse a volume that is over the voxel bound or would not fit in memory."""
    voxels = int(np.prod(shape3, dtype=np.int64))
    bound = max_voxels_bound(max_voxels)
    if voxels > bound:
        raise ImageError(f'image too large: {_format_shape(shape3)} = {voxels:,} voxels, over '
                         f'the limit of {bound:,} (MIQA_MAX_VOXELS)')
    need = total_voxels * 4 + voxels * BYTES_PER_VOXEL_ESTIMATE
    available = _available_memory()
    if available is not None and need > available:
        raise ImageError(f'image too large for this machine: {_format_shape(shape3)} needs about '
                         f'{need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available')


def _itk_message(exc: Exception) -> str:
    """The one useful line of an ITK exception (they span several lines)."""
    text = str(exc)
    match = re.search(r'Description:\s*(.+)', text)
    if match:
        text = match.group(1)
    text = ' '.join(text.split())
    text = re.sub(r'\S+\.(?:cxx|hxx|h):\d+:\s*', '', text)
    text = re.sub(r'ITK ERROR: \w+\(0x[0-9a-f]+\):\s*', '', text)
    text = re.sub(r'\s*Reason: Success$', '', text)
    return text[:240]


def source_format(path: str | os.PathLike) -> str:
    """A short format name from the file name ('nifti', 'nrrd', 'metaimage', 'mgh', 'dicom-zip')."""
    name = str(path).lower()
    for ending, fmt in (('.nii.gz', 'nifti'), ('.nii', 'nifti'), ('.nrrd', 'nrrd'),
                        ('.nhdr', 'nrrd'), ('.mha', 'metaimage'), ('.mhd', 'metaimage'),
                        ('.mgz', 'mgh'), ('.mgh', 'mgh'), ('.zip', 'dicom-zip')):
        if name.endswith(ending):
            return fmt
    return 'unknown'


_DIRECT_TYPES = {'unsigned_char': 'UC', 'char': 'SS', 'unsigned_short': 'US', 'short': 'SS'}


def _pixel_type(itk, io) -> object:
    """A wrapped ITK pixel type that holds the file's values (float for everything else)."""
    name = io.GetComponentTypeAsString(io.GetComponentType())
    return getattr(itk, _DIRECT_TYPES.get(name, 'F'))


def _describe_io(io) -> tuple[int, list[int], int, str]:
    """(dimensions, sizes, components, pixel-type name) from an ImageIO that read its header."""
    ndim = int(io.GetNumberOfDimensions())
    sizes = [int(io.GetDimensions(i)) for i in range(ndim)]
    return ndim, sizes, int(io.GetNumberOfComponents()), io.GetPixelTypeAsString(io.GetPixelType())


def _check_header(ndim: int, sizes: list[int], components: int, pixel: str,
                  max_voxels: int | None) -> tuple[tuple[int, int, int], str | None]:
    """Validate a header before reading voxels; return the 3D shape and a note for 4D."""
    if components != 1:
        raise ImageError(f'{pixel} image with {components} components per voxel: only scalar '
                         f'(grayscale) volumes can be assessed')
    while ndim > 3 and sizes[-1] == 1:  # trailing singleton dimensions are 3D in disguise
        ndim -= 1
        sizes = sizes[:ndim]
    if ndim < 3 or min(sizes[:3]) < 2:
        raise ImageError(f'2D image ({_format_shape(sizes)}): a 3D volume is needed')
    if ndim > 4 and any(s > 1 for s in sizes[4:]):
        raise ImageError(f'{ndim}D image ({_format_shape(sizes)}): only 3D or 4D images can be '
                         f'assessed')
    shape3 = (sizes[0], sizes[1], sizes[2])
    total = int(np.prod(sizes, dtype=np.int64))
    _check_size(shape3, total, max_voxels)
    note = None
    if ndim >= 4 and sizes[3] > 1:
        note = f'4D series of {sizes[3]} volumes: assessed the first volume'
    return shape3, note


@dataclass
class _Raw:
    """Voxels as read: an ``[x, y, z]`` array (maybe a view), LPS direction, spacing, note."""

    array: np.ndarray
    direction: np.ndarray
    spacing: np.ndarray
    note: str | None
    keepalive: object = None  # the ITK image that owns the memory of a view
    ras: np.ndarray | None = None  # the float32 canonical-RAS copy, when made while reading


def _from_itk_image(image, note: str | None) -> _Raw:
    itk = _itk()
    direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=float)
    spacing = np.asarray(tuple(image.GetSpacing()), dtype=float)
    return _Raw(itk.array_view_from_image(image).T, direction, spacing, note, image)


def _header_geometry(io) -> tuple[np.ndarray, np.ndarray]:
    """The 3D LPS direction matrix and spacing from an ImageIO that read its header."""
    direction = np.array([[io.GetDirection(col)[row] for col in range(3)] for row in range(3)],
                         dtype=float)
    spacing = np.array([io.GetSpacing(axis) for axis in range(3)], dtype=float)
    return direction, spacing


def _nifti_data_bytes(path: str):
    """(nibabel image, bytes the file must hold: header + voxel data) of a NIfTI file."""
    import nibabel as nib

    try:
        image = nib.load(path)
    except Exception as exc:  # nibabel raises several types for bad headers
        raise ImageError(f'cannot read the NIfTI header: {exc}') from None
    shape = image.header.get_data_shape()
    itemsize = image.header.get_data_dtype().itemsize
    offset = int(getattr(image.dataobj, 'offset', 0))
    return image, offset + int(np.prod(shape, dtype=np.int64)) * itemsize


def _gzip_length(path: str, expected: int) -> int:
    """Uncompressed length of a gzip file; reads it all unless its trailer says ``expected``."""
    with open(path, 'rb') as fh:
        fh.seek(-4, os.SEEK_END)
        if int.from_bytes(fh.read(4), 'little') == expected % (1 << 32):
            return expected  # the usual single-member file written in full
    total = 0
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, 'rb') as fh:
            while chunk := fh.read(1 << 20):
                total += len(stream.decompress(chunk))
                while stream.eof and stream.unused_data:  # a further gzip member
                    rest = stream.unused_data
                    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    total += len(stream.decompress(rest))
    except zlib.error:
        pass  # corrupt stream: report what could be read
    return total


def _check_nifti(path: str):
    """Refuse a NIfTI file whose data is shorter than its header says; return nibabel's image.

    ITK's NIfTI reader silently fills missing data with zeros, so check here first.
    """
    image, expected = _nifti_data_bytes(path)
    if path.lower().endswith('.gz'):
        actual = _gzip_length(path, expected)
    else:
        actual = os.path.getsize(path)
    if actual < expected:
        raise ImageError(f'truncated file: the header promises {expected:,} bytes of image, '
                         f'the file holds {actual:,}')
    return image


def _read_nibabel(path: str, image, ndim: int, direction: np.ndarray | None = None,
                  spacing: np.ndarray | None = None, note: str | None = None) -> _Raw:
    """First volume of an image through nibabel, geometry from ITK's header when given."""

    try:
        data = image.dataobj[..., 0] if ndim >= 4 else image.dataobj[...]
        data = np.asarray(data)
    except Exception as exc:
        raise ImageError(f'cannot read the image data (corrupt or truncated file?): '
                         f'{" ".join(str(exc).split())[:200]}') from None
    while data.ndim > 3:
        data = data[..., 0]
    if direction is None or spacing is None:
        affine = image.affine
        zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        zooms[zooms == 0] = 1.0
        spacing = zooms
        direction = np.diag([-1.0, -1.0, 1.0]) @ (affine[:3, :3] / zooms)
    return _Raw(data, direction, spacing, note)


def _read_mgh(path: str, max_voxels: int | None) -> _Raw:
    """MGH/MGZ (FreeSurfer) through nibabel: ITK's pip wheels have no MGH reader."""
    import nibabel as nib

    try:
        image = nib.load(path)
    except Exception as exc:
        raise ImageError(f'cannot read the MGH header: {" ".join(str(exc).split())}') from None
    shape = list(image.shape)
    _, note = _check_header(len(shape), shape, 1, 'scalar', max_voxels)
    return _read_nibabel(path, image, len(shape), note=note)


def _gzip_opener():
    """``open`` of a gzip module: python-isal's (twice zlib's speed) when installed."""
    try:
        from isal import igzip

        return igzip.open
    except ImportError:  # pragma: no cover - isal is in the worker extra
        import gzip

        return gzip.open


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What a damaged gzip stream raises: zlib's, gzip's and python-isal's errors."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    try:
        from isal.igzip_lib import IsalError

        errors += (IsalError,)
    except ImportError:  # pragma: no cover - isal is in the worker extra
        pass
    return errors


def _streams_into_float32(nifti, ndim: int) -> bool:
    """Whether :func:`_read_nifti_gz` reads this NIfTI: a 3D integer image without scaling
    (the common scanner output); the rest goes through ITK (or nibabel for floats)."""
    header = nifti.header
    dtype = header.get_data_dtype()
    slope, inter = header.get_slope_inter()
    # the scaling the readers apply (nibabel's proxy also finds one where scl_slope is NaN)
    scaled = (getattr(nifti.dataobj, 'slope', 1.0), getattr(nifti.dataobj, 'inter', 0.0))
    return (ndim == 3 and dtype.kind in 'iu' and dtype.itemsize <= 4
            and slope in (None, 1.0) and inter in (None, 0.0) and scaled == (1.0, 0.0)
            and len(header.get_data_shape()) == 3)


def _read_nifti_gz(path: str, nifti, direction: np.ndarray, spacing: np.ndarray,
                   note: str | None) -> _Raw:
    """A gzipped 3D integer NIfTI read slab by slab, each slab turned into the float32
    canonical-RAS array on a second thread while the next one is decompressed.

    The same voxels, direction and spacing as ITK's reader (the geometry is ITK's header
    read), in ~40 instead of ~80 ms for a 256x256x176 int16 scan: decompressing (~45 ms with
    python-isal) and the transposed float32 copy (~40 ms) overlap instead of following each
    other. ``_check_nifti`` has refused a short file before.
    """
    shape = tuple(int(n) for n in nifti.header.get_data_shape())
    dtype = nifti.header.get_data_dtype()
    offset = int(getattr(nifti.dataobj, 'offset', 0))
    buffer = np.empty(shape[::-1], dtype=dtype)  # file order: x fastest
    native = buffer.T  # [x, y, z]
    ornt, _ = _orientation(direction, spacing)
    ras_shape = [0, 0, 0]
    for axis, (target, _flip) in enumerate(ornt):
        ras_shape[int(target)] = shape[axis]
    ras = np.empty(ras_shape, dtype=np.float32)
    # ``ras`` seen in the file's axis order: element [i, j, k] is native[i, j, k]'s place
    into = np.transpose(ras, [int(t) for t, _ in ornt])
    for axis, (_target, flip) in enumerate(ornt):
        if flip < 0:
            into = np.flip(into, axis)
    slab = shape[0] * shape[1] * dtype.itemsize
    raw = memoryview(buffer).cast('B')

    def convert(start: int, stop: int) -> None:
        into[:, :, start:stop] = native[:, :, start:stop]

    threaded = native.size >= _THREADED_COPY_MIN and usable_cores() > 1
    pool = ThreadPoolExecutor(1, thread_name_prefix='miqa-read') if threaded else None
    pending = []
    try:
        with _gzip_opener()(path, 'rb') as stream:
            if len(stream.read(offset)) != offset:
                raise EOFError('no voxel data')
            for start in range(0, shape[2], _COPY_BLOCK):
                stop = min(shape[2], start + _COPY_BLOCK)
                part, done = raw[start * slab:stop * slab], 0
                while done < len(part):
                    count = stream.readinto(part[done:])
                    if not count:
                        raise EOFError(f'the data ends after {start * slab + done:,} bytes')
                    done += count
                if pool is None:
                    convert(start, stop)
                else:
                    pending.append(pool.submit(convert, start, stop))
        for future in pending:
            future.result()
    except _decompression_errors() as exc:
        raise ImageError(f'cannot read the image data (corrupt or truncated file?): '
                         f'{" ".join(str(exc).split())[:200]}') from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return _Raw(native, direction, spacing, note, ras=ras)


def _read_single(path: str, max_voxels: int | None) -> _Raw:
    """Read a single-file image (ITK; nibabel for MGH and for float NIfTI's voxels)."""
    if source_format(path) == 'mgh':
        return _read_mgh(path, max_voxels)
    itk = _itk()
    io = itk.ImageIOFactory.CreateImageIO(path, itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise ImageError('not a readable image (no ITK reader recognises the file '
                         f'{os.path.basename(path)!r})')
    io.SetFileName(path)
    try:
        io.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageError(f'cannot read the image header: {_itk_message(exc)}') from None
    ndim, sizes, components, pixel = _describe_io(io)
    _, note = _check_header(ndim, sizes, components, pixel, max_voxels)
    ptype = _pixel_type(itk, io)
    if io.GetNameOfClass() == 'NiftiImageIO':
        nifti = _check_nifti(path)
        if ptype is itk.F and np.issubdtype(nifti.get_data_dtype(), np.floating):
            # ITK's NIfTI reader turns NaN/Inf into 0; read float voxels with nibabel to see them.
            direction, spacing = _header_geometry(io)
            return _read_nibabel(path, nifti, ndim, direction, spacing, note)
        if path.lower().endswith('.gz') and _streams_into_float32(nifti, ndim):
            direction, spacing = _header_geometry(io)
            return _read_nifti_gz(path, nifti, direction, spacing, note)
    try:
        if ndim == 3:
            reader = itk.ImageFileReader[itk.Image[ptype, 3]].New(FileName=path, ImageIO=io)
            reader.Update()
            return _from_itk_image(reader.GetOutput(), note)
        image4 = itk.Image[ptype, 4]
        reader = itk.ImageFileReader[image4].New(FileName=path, ImageIO=io)
        reader.UpdateOutputInformation()
        region = reader.GetOutput().GetLargestPossibleRegion()
        size = region.GetSize()
        size[3] = 0
        region.SetSize(size)
        extract = itk.ExtractImageFilter[image4, itk.Image[ptype, 3]].New(
            Input=reader.GetOutput(), ExtractionRegion=region)
        extract.SetDirectionCollapseToSubmatrix()
        extract.Update()
        return _from_itk_image(extract.GetOutput(), note)
    except RuntimeError as exc:
        raise ImageError(f'cannot read the image data (corrupt or truncated file?): '
                         f'{_itk_message(exc)}') from None


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> list[Path]:
    """Extract a zip's files under flat, numbered names (no path traversal, bounded size)."""
    members = [m for m in archive.infolist() if not m.is_dir()
               and not os.path.basename(m.filename).startswith('.')
               and '__MACOSX' not in m.filename]
    limit = max_archive_bytes()
    total = sum(m.file_size for m in members)
    if total > limit:  # from the central directory, before extracting anything
        raise ImageError(f'zip archive too large: it expands to {total:,} bytes, over the limit '
                         f'of {limit:,} (MIQA_MAX_ARCHIVE_BYTES); refused before extracting')
    paths = []
    written = 0
    for number, member in enumerate(members):
        base = os.path.basename(member.filename)
        lower = base.lower()
        suffix = next((e for e in IMAGE_EXTENSIONS if lower.endswith(e) and e != '.zip'), '')
        out = target / f'{number:06d}{suffix}'
        with archive.open(member) as src, open(out, 'wb') as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > limit:  # headers that understate the sizes
                    raise ImageError(f'zip archive too large: extraction passed the limit of '
                                     f'{limit:,} bytes (MIQA_MAX_ARCHIVE_BYTES) although its '
                                     'headers declare less; stopped')
                dst.write(chunk)
        paths.append(out)
    return paths


def _read_dicom_zip(path: str, max_voxels: int | None):
    """Read the largest DICOM series in a zip (or its single non-DICOM image file)."""
    itk = _itk()
    workdir = Path(tempfile.mkdtemp(prefix='miqa-dicom-'))
    try:
        try:
            with zipfile.ZipFile(path) as archive:
                files = _safe_extract(archive, workdir)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise ImageError(f'not a readable zip archive: {exc}') from None
        except RuntimeError as exc:  # encrypted members
            raise ImageError(f'cannot extract the zip archive: {exc}') from None
        if not files:
            raise ImageError('the zip archive is empty')
        images = [f for f in files if f.suffix]
        if len(images) == 1 and len(files) == 1:
            raw = _read_single(str(images[0]), max_voxels)
            raw.array = np.array(raw.array, copy=True)  # the temp file goes away
            return raw
        names = itk.GDCMSeriesFileNames.New()
        names.SetUseSeriesDetails(True)
        names.SetDirectory(str(workdir))
        uids = list(names.GetSeriesUIDs())
        if not uids:
            raise ImageError(f'the zip archive holds no DICOM series ({len(files)} files)')
        series = max((list(names.GetFileNames(uid)) for uid in uids), key=len)
        io = itk.GDCMImageIO.New()
        io.SetFileName(series[0])
        try:
            io.ReadImageInformation()
        except RuntimeError as exc:
            raise ImageError(f'cannot read the DICOM header: {_itk_message(exc)}') from None
        meta = io.GetMetaDataDictionary()
        image_type = meta['0008|0008'] if meta.HasKey('0008|0008') else ''
        if 'MOSAIC' in str(image_type).upper():
            raise ImageError('Siemens MOSAIC DICOM (each file tiles many slices) is not '
                             'supported: convert it to NIfTI with dcm2niix and assess that')
        ndim, sizes, components, pixel = _describe_io(io)
        if len(series) > 1:
            sizes = sizes[:2] + [len(series)]
            ndim = 3
        _check_header(ndim, sizes, components, pixel, max_voxels)
        ptype = _pixel_type(itk, io)
        image3 = itk.Image[ptype, 3]
        try:
            if len(series) > 1:
                reader = itk.ImageSeriesReader[image3].New(ImageIO=io, FileNames=series)
            else:
                reader = itk.ImageFileReader[image3].New(ImageIO=io, FileName=series[0])
            reader.Update()
        except RuntimeError as exc:
            raise ImageError(f'cannot read the DICOM series: {_itk_message(exc)}') from None
        note = None
        if len(uids) > 1:
            note = (f'zip holds {len(uids)} DICOM series: assessed the largest '
                    f'({len(series)} files)')
        return _from_itk_image(reader.GetOutput(), note)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _orientation(direction_lps: np.ndarray, spacing: np.ndarray):
    """nibabel orientation of the voxel axes, from ITK's LPS direction matrix."""
    from nibabel import orientations

    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction_lps @ np.diag(spacing)
    ornt = orientations.io_orientation(affine)
    codes = ''.join(orientations.ornt2axcodes(ornt))
    return ornt, codes


def to_ras(array_xyz: np.ndarray, direction_lps: np.ndarray, spacing) -> tuple[
        np.ndarray, tuple[float, float, float], str]:
    """Permute/flip an ``[x, y, z]`` array to canonical RAS; also the new spacing and old codes.

    The result is a view where possible; callers copy it once (with their dtype).
    """
    from nibabel import orientations

    spacing = np.asarray(spacing, dtype=float)
    ornt, codes = _orientation(direction_lps, spacing)
    view = orientations.apply_orientation(array_xyz, ornt)
    new_spacing = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(ornt):
        new_spacing[int(target)] = round(float(spacing[axis]), 6)  # float32 headers
    return view, (new_spacing[0], new_spacing[1], new_spacing[2]), codes


#: Slices per block of :func:`_contiguous_float32`: a block of a 256^2 int16 scan is 2 MiB.
_COPY_BLOCK = 16


def _contiguous_float32(view: np.ndarray) -> np.ndarray:
    """A C-ordered float32 copy of a (usually transposed) voxel view, made block by block.

    ITK's voxels reach us transposed; one strided copy of the whole volume misses the cache
    on every read. Blocks of slices along the view's slowest memory axis each lie together in
    memory: a 256x256x176 int16 scan converts in ~37 ms instead of 67 ms, and in ~23 ms with
    the blocks shared between 2 cores (benchmarks/bench_inference.py measures the whole read).
    """
    if view.ndim != 3 or view.flags.c_contiguous:
        return np.ascontiguousarray(view, dtype=np.float32)
    axis = int(np.argmax(np.abs(view.strides)))
    out = np.empty(view.shape, dtype=np.float32)
    starts = list(range(0, view.shape[axis], _COPY_BLOCK))

    def copy(chunk: list[int]) -> None:
        block: list[slice] = [slice(None)] * 3
        for start in chunk:
            block[axis] = slice(start, start + _COPY_BLOCK)
            out[tuple(block)] = view[tuple(block)]

    workers = min(usable_cores(), len(starts)) if view.size >= _THREADED_COPY_MIN else 1
    if workers <= 1:
        copy(starts)
        return out
    # numpy casts without the GIL: interleaved blocks on every core (37 -> 23 ms on 2 cores)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, [starts[i::workers] for i in range(workers)]))
    return out


#: Volumes smaller than this are copied on one thread (threads would cost more than they save).
_THREADED_COPY_MIN = 1 << 21


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _to_volume(raw: _Raw, fmt: str) -> ScanVolume:
    """Canonical-RAS float32 ScanVolume from raw voxels, refusing non-finite or constant data."""
    native = raw.array
    view, ras_spacing, codes = to_ras(native, raw.direction, raw.spacing)
    if np.issubdtype(native.dtype, np.floating):
        finite = np.isfinite(native)
        bad = int(finite.size - np.count_nonzero(finite))
        if bad:
            nans = int(np.count_nonzero(np.isnan(native)))
            raise ImageError(f'image has {bad:,} non-finite voxels ({nans:,} NaN, '
                             f'{bad - nans:,} infinite)')
    low, high = native.min(), native.max()
    if low == high:
        raise ImageError(f'constant image: every voxel is {float(low):g}')
    array = raw.ras if raw.ras is not None else _contiguous_float32(view)
    return ScanVolume(array=array, spacing=ras_spacing, original_orientation=codes,
                      source_format=fmt, note=raw.note)


def read_volume(path: str | os.PathLike, max_voxels: int | None = None) -> ScanVolume:
    """Read a scan into a canonical-RAS :class:`ScanVolume`; raise ImageError saying why not.

    The header is checked (dimensions, components, size against ``max_voxels`` /
    ``MIQA_MAX_VOXELS`` / 1024^3 and free memory) before voxel data is read. A 4D image gives
    its first volume, with a ``note`` saying so.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f'file not found: {path}')
    if not os.path.isfile(path):
        raise ImageError(f'not a file: {path}')
    if os.path.getsize(path) == 0:
        raise ImageError('empty file (0 bytes)')
    fmt = source_format(path)
    raw = _read_dicom_zip(path, max_voxels) if fmt == 'dicom-zip' else _read_single(
        path, max_voxels)
    return _to_volume(raw, fmt)


_warm = False


def warm_up_itk() -> None:
    """Pay ITK's first-read cost (seconds of lazy loading) by reading a tiny generated image."""
    global _warm
    if _warm:
        return
    import nibabel as nib

    with tempfile.TemporaryDirectory(prefix='miqa-warm-') as tmp:
        path = os.path.join(tmp, 'warm.nii.gz')
        data = np.arange(8 * 8 * 8, dtype=np.int16).reshape(8, 8, 8)
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        read_volume(path)
        # The 4D path and the DICOM/orientation modules load their own wrappers.
        itk = _itk()
        itk.ExtractImageFilter[itk.Image[itk.SS, 4], itk.Image[itk.SS, 3]]
        itk.GDCMImageIO.New()
    _warm = True
