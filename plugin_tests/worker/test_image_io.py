"""Reading scans: canonical RAS whatever the stored orientation/format, and clear refusals."""

import locale
import os
import zipfile

import nibabel as nib
import numpy as np
import pytest

from miqa_worker.image_io import ImageError, read_volume

from .conftest import head_phantom

AFFINE = np.diag([1.0, 1.2, 1.5, 1.0])


def _reoriented(array, affine, codes):
    """The same scan (same world geometry) stored with voxel axes along ``codes``."""
    image = nib.Nifti1Image(array, affine)
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt('RAS'),
                                           nib.orientations.axcodes2ornt(codes))
    return image.as_reoriented(ornt)


@pytest.mark.parametrize('codes', ['LAS', 'PSR', 'ILP', 'RPI', 'SAL'])
def test_reoriented_nifti_reads_back_to_the_same_ras_array(tmp_path, codes):
    array = head_phantom((40, 50, 30))
    nib.save(nib.Nifti1Image(array, AFFINE), str(tmp_path / 'ras.nii.gz'))
    moved = _reoriented(array, AFFINE, codes)
    assert ''.join(nib.aff2axcodes(moved.affine)) == codes
    stored = np.asarray(moved.dataobj)
    assert stored.shape != array.shape or not np.array_equal(stored, array)
    nib.save(moved, str(tmp_path / 'moved.nii.gz'))
    ref = read_volume(tmp_path / 'ras.nii.gz')
    got = read_volume(tmp_path / 'moved.nii.gz')
    assert ref.original_orientation == 'RAS' and got.original_orientation == codes
    np.testing.assert_array_equal(got.array, array)
    assert got.spacing == pytest.approx((1.0, 1.2, 1.5))
    assert got.shape == array.shape and got.array.dtype == np.float32
    assert got.array.flags['C_CONTIGUOUS']


def test_oblique_affine_takes_the_closest_axes(tmp_path):
    """A 20° tilt is kept (no resampling); axes go to their nearest RAS direction."""
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                    [-np.sin(angle), 0, np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-2.0, 1.0, 1.0])  # axis 0 points mostly to the left
    array = head_phantom((30, 40, 20))
    nib.save(nib.Nifti1Image(array, affine), str(tmp_path / 'oblique.nii.gz'))
    volume = read_volume(tmp_path / 'oblique.nii.gz')
    assert volume.original_orientation == 'LAS'
    np.testing.assert_array_equal(volume.array, array[::-1])
    assert volume.spacing == pytest.approx((2.0, 1.0, 1.0))
    canonical = nib.as_closest_canonical(nib.load(str(tmp_path / 'oblique.nii.gz')))
    np.testing.assert_array_equal(volume.array, np.asarray(canonical.dataobj))


@pytest.mark.parametrize('ext', ['.nrrd', '.mha', '.mhd', '.nhdr'])
def test_itk_formats_agree_with_nifti(tmp_path, ext):
    import itk

    array = head_phantom((30, 36, 24)).astype(np.int16)
    nib.save(nib.Nifti1Image(array, AFFINE), str(tmp_path / 'scan.nii'))
    image = itk.imread(str(tmp_path / 'scan.nii'))
    itk.imwrite(image, str(tmp_path / f'scan{ext}'), compression=True)
    volume = read_volume(tmp_path / f'scan{ext}')
    np.testing.assert_array_equal(volume.array, array.astype(np.float32))
    assert volume.spacing == pytest.approx((1.0, 1.2, 1.5))
    assert volume.original_orientation == 'RAS'
    assert volume.source_format in ('nrrd', 'metaimage')


def test_mgz_reads_through_nibabel(tmp_path):
    array = head_phantom((30, 36, 24))
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    nib.save(nib.MGHImage(array, affine), str(tmp_path / 'scan.mgz'))
    volume = read_volume(tmp_path / 'scan.mgz')
    assert volume.original_orientation == 'LAS' and volume.source_format == 'mgh'
    np.testing.assert_array_equal(volume.array, array[::-1])


def _write_dicom_series(folder, array_zyx, spacing=(0.9, 0.8, 2.0)):
    """A DICOM series of axial slices, written with SimpleITK (test-only dependency).

    SimpleITK's GDCM writer sets the process's C locale to "C" (Python's default text encoding
    becomes ASCII), so the caller's locale is restored afterwards.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_slices(folder, array_zyx, spacing)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(folder, array_zyx, spacing):
    sitk = pytest.importorskip('SimpleITK')
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin((-20.0, -30.0, 10.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = '1.2.826.0.1.3680043.2.1125.99.1'
    folder.mkdir()
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        tags = {'0008|0060': 'MR', '0020|000e': series, '0020|000d': series + '.1',
                '0020|0037': '1\\0\\0\\0\\1\\0', '0020|0013': str(k + 1),
                '0020|0032': '\\'.join(str(v) for v in image.TransformIndexToPhysicalPoint(
                    (0, 0, k))),
                '0028|0030': f'{spacing[1]}\\{spacing[0]}', '0018|0050': str(spacing[2])}
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetImageIO('GDCMImageIO')
        writer.SetFileName(str(folder / f'IM{k:04d}'))
        writer.Execute(piece)


def test_zipped_dicom_series(tmp_path):
    array = head_phantom((50, 40, 12)).astype(np.int16)  # x, y, z
    _write_dicom_series(tmp_path / 'dicom', np.ascontiguousarray(array.T))
    archive = tmp_path / 'series.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        for name in sorted(os.listdir(tmp_path / 'dicom')):
            zf.write(tmp_path / 'dicom' / name, f'patient/study/{name}')
    volume = read_volume(archive)
    assert volume.source_format == 'dicom-zip'
    assert volume.original_orientation == 'LPS'  # DICOM's patient axes
    np.testing.assert_array_equal(volume.array, array[::-1, ::-1, :].astype(np.float32))
    assert volume.spacing == pytest.approx((0.9, 0.8, 2.0))


def test_zip_with_one_nifti_inside(tmp_path, write_nifti):
    array = head_phantom((30, 30, 30))
    path = write_nifti(array, 'inner.nii.gz')
    with zipfile.ZipFile(tmp_path / 'wrapped.zip', 'w') as zf:
        zf.write(path, 'folder/inner.nii.gz')
    np.testing.assert_array_equal(read_volume(tmp_path / 'wrapped.zip').array, array)


def test_four_d_assesses_the_first_volume_and_says_so(write_nifti):
    first = head_phantom((30, 32, 20), seed=1)
    series = np.stack([first, first * 0 + 5, first * 2], axis=-1)
    volume = read_volume(write_nifti(series.astype(np.int16), '4d.nii.gz', AFFINE))
    assert volume.note == '4D series of 3 volumes: assessed the first volume'
    np.testing.assert_array_equal(volume.array, first.astype(np.int16))
    # a float 4D series goes the other reading path
    volume = read_volume(write_nifti(series.astype(np.float32), '4df.nii.gz', AFFINE))
    np.testing.assert_array_equal(volume.array, first)
    assert '3 volumes' in volume.note


# ---- refusals: each one line, each saying why ----


def _refused(path, match, **kwargs):
    with pytest.raises(ImageError, match=match) as info:
        read_volume(path, **kwargs)
    assert '\n' not in str(info.value)
    return str(info.value)


def test_missing_and_empty_files(tmp_path):
    _refused(tmp_path / 'nope.nii.gz', 'file not found')
    (tmp_path / 'empty.nii').write_bytes(b'')
    _refused(tmp_path / 'empty.nii', 'empty file')
    _refused(tmp_path, 'not a file')


def test_text_and_random_bytes_named_as_images(tmp_path):
    (tmp_path / 'notes.nii').write_text('this is not an image\n' * 50)
    _refused(tmp_path / 'notes.nii', 'not a readable image')
    (tmp_path / 'noise.nii.gz').write_bytes(np.random.default_rng(0).bytes(4000))
    _refused(tmp_path / 'noise.nii.gz', 'not a readable image')
    (tmp_path / 'noise.nrrd').write_bytes(np.random.default_rng(1).bytes(4000))
    _refused(tmp_path / 'noise.nrrd', 'not a readable image|cannot read')
    (tmp_path / 'noise.zip').write_bytes(np.random.default_rng(2).bytes(4000))
    _refused(tmp_path / 'noise.zip', 'not a readable zip')


@pytest.mark.parametrize('name', ['scan.nii.gz', 'scan.nii'])
def test_truncated_nifti(write_nifti, name):
    path = write_nifti(head_phantom((60, 60, 60)).astype(np.int16), name)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _refused(path, 'truncated file')


def test_truncated_nrrd_and_mha(tmp_path):
    import itk

    image = itk.image_from_array(head_phantom((40, 40, 40)).astype(np.int16))
    for name in ('scan.nrrd', 'scan.mha'):
        itk.imwrite(image, str(tmp_path / name), compression=True)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[:len(data) * 2 // 3])
        _refused(tmp_path / name, 'cannot read the image data')


def test_two_d_images(write_nifti):
    _refused(write_nifti(np.arange(400, dtype=np.int16).reshape(20, 20), '2d.nii.gz'),
             r'2D image \(20×20\)')
    _refused(write_nifti(np.arange(400, dtype=np.int16).reshape(20, 20, 1), 'slice.nii.gz'),
             '2D image')


def test_non_finite_voxels_are_counted(write_nifti):
    array = head_phantom((30, 30, 30))
    array[0, 0, :4] = np.nan
    array[5, 5, 5] = np.inf
    array[6, 6, 6] = -np.inf
    message = _refused(write_nifti(array, 'nan.nii.gz'), 'non-finite')
    assert '6 non-finite voxels (4 NaN, 2 infinite)' in message


def test_constant_image(write_nifti):
    _refused(write_nifti(np.full((20, 20, 20), 3, np.int16), 'flat.nii.gz'),
             'constant image: every voxel is 3')


def test_too_large_by_parameter_and_environment(write_nifti, monkeypatch):
    path = write_nifti(head_phantom((40, 40, 40)), 'big.nii.gz')
    message = _refused(path, 'image too large', max_voxels=50_000)
    assert '64,000 voxels' in message and '50,000' in message
    monkeypatch.setenv('MIQA_MAX_VOXELS', '1000')
    _refused(path, 'image too large')
    monkeypatch.setenv('MIQA_MAX_VOXELS', '1e6')
    assert read_volume(path).shape == (40, 40, 40)


def test_too_large_is_refused_from_the_header_alone(tmp_path):
    """A header promising 2048^3 voxels is refused without reading (or having) the data."""
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 2048))
    header.set_data_dtype(np.int16)
    path = tmp_path / 'huge.nii'
    with open(path, 'wb') as fh:
        fh.write(header.binaryblock + b'\0' * 4)  # 352 bytes, no voxel data at all
    _refused(path, 'image too large: 2048×2048×2048')


def test_vector_images_are_refused(tmp_path):
    import itk

    rgb = itk.image_from_array(np.zeros((10, 12, 14, 3), np.uint8) + 7, is_vector=True)
    itk.imwrite(rgb, str(tmp_path / 'rgb.mha'))
    _refused(tmp_path / 'rgb.mha', '3 components per voxel: only scalar')


def test_zip_without_dicom(tmp_path):
    with zipfile.ZipFile(tmp_path / 'docs.zip', 'w') as zf:
        zf.writestr('a.txt', 'hello')
        zf.writestr('b.txt', 'world')
    _refused(tmp_path / 'docs.zip', 'holds no DICOM series')
    with zipfile.ZipFile(tmp_path / 'empty.zip', 'w'):
        pass
    _refused(tmp_path / 'empty.zip', 'zip archive is empty')


# ---- real scans ----


@pytest.mark.realdata
def test_real_scans_match_nibabel_canonical(shared_mri):
    files = sorted(p for p in shared_mri.glob('*.nii*'))
    assert files
    for path in files:
        volume = read_volume(path)
        image = nib.as_closest_canonical(nib.load(str(path)))
        expected = image.get_fdata(dtype=np.float32)
        expected = expected[..., 0] if expected.ndim == 4 else expected
        np.testing.assert_allclose(volume.array, expected, rtol=1e-5, atol=1e-3,
                                   err_msg=path.name)
        assert volume.spacing == pytest.approx(image.header.get_zooms()[:3], rel=1e-5)
        assert volume.original_orientation == ''.join(nib.aff2axcodes(nib.load(
            str(path)).affine))


@pytest.mark.realdata
def test_real_nrrd_matches_its_nifti_twin(shared_mri):
    nrrd = read_volume(shared_mri / 'cstar-stroke_patient_FLAIR-brain-oblique.nrrd')
    nifti = read_volume(shared_mri / 'cstar-stroke_patient_FLAIR-brain.nii.gz')
    np.testing.assert_array_equal(nrrd.array, nifti.array)
    assert nrrd.original_orientation == 'RAS' and nrrd.source_format == 'nrrd'


@pytest.mark.realdata
def test_real_mosaic_dicom_is_refused_clearly(shared_mri, tmp_path):
    """ITK sees the Siemens MOSAIC series as two 384x384 slices: refused, with the way out."""
    folder = shared_mri / 'dicom' / 'dcmqa_stc-test_sag-int-36sl_bold-motion'
    with zipfile.ZipFile(tmp_path / 'mosaic.zip', 'w') as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f'sagint36/{path.name}')
    _refused(tmp_path / 'mosaic.zip', 'MOSAIC .* dcm2niix')


@pytest.mark.parametrize('threads', [1, 3])
def test_blockwise_float32_copy_equals_numpys_for_every_axis_order(threads, monkeypatch):
    """The read's block-by-block copy gives the same voxels for transposed and flipped views,
    on one thread or with the blocks shared between threads."""
    import itertools

    from miqa_worker import image_io
    from miqa_worker.image_io import _contiguous_float32

    monkeypatch.setattr(image_io, '_THREADED_COPY_MIN', 0 if threads > 1 else 1 << 40)
    monkeypatch.setattr(image_io, 'usable_cores', lambda: threads)

    data = np.random.default_rng(0).integers(-500, 3000, (37, 20, 45)).astype(np.int16)
    for order in itertools.permutations(range(3)):
        for flips in ((), (0,), (1, 2)):
            view = np.flip(data.transpose(order), flips) if flips else data.transpose(order)
            out = _contiguous_float32(view)
            assert out.flags.c_contiguous and out.dtype == np.float32
            np.testing.assert_array_equal(out, np.ascontiguousarray(view, dtype=np.float32))


def _itk_read(path, monkeypatch):
    """The same file through ITK's reader (the slab-by-slab NIfTI path turned off)."""
    from miqa_worker import image_io

    with monkeypatch.context() as patch:
        patch.setattr(image_io, '_streams_into_float32', lambda nifti, ndim: False)
        return read_volume(path)


ORIENTATIONS = ['RAS', 'LPS', 'LAS', 'PSR', 'ILP', 'RPI', 'SAL', 'AIR', 'IPL', 'SLA']


@pytest.mark.parametrize('threads', [1, 2])
@pytest.mark.parametrize('dtype', ['<i2', '>i2', 'u1', '<u2', '<i4'])
def test_gzipped_integer_nifti_read_slab_by_slab_equals_itks_read(tmp_path, monkeypatch,
                                                                   dtype, threads):
    """The gzipped integer NIfTI path (decompressed slab by slab, each slab converted on a
    second thread) gives ITK's voxels, spacing and orientation for every axis order, byte
    order and integer type, on one thread or two."""
    from miqa_worker import image_io

    monkeypatch.setattr(image_io, '_THREADED_COPY_MIN', 0 if threads > 1 else 1 << 40)
    monkeypatch.setattr(image_io, 'usable_cores', lambda: threads)
    used = []
    real = image_io._read_nifti_gz
    monkeypatch.setattr(image_io, '_read_nifti_gz', lambda *a: used.append(1) or real(*a))
    info = np.iinfo(np.dtype(dtype))
    rng = np.random.default_rng(len(dtype) + threads)
    array = rng.integers(max(info.min, -2000), min(info.max, 4000), (37, 20, 45),
                         endpoint=True).astype(dtype)
    for codes in ORIENTATIONS:
        moved = _reoriented(array, AFFINE, codes)
        path = tmp_path / f'{codes}.nii.gz'
        header = nib.Nifti1Header(endianness=np.dtype(dtype).byteorder.replace('|', '='))
        moved = nib.Nifti1Image(np.asarray(moved.dataobj), moved.affine, header)
        moved.set_data_dtype(np.dtype(dtype))
        nib.save(moved, str(path))
        assert nib.load(str(path)).get_data_dtype() == np.dtype(dtype)
        got, ref = read_volume(path), _itk_read(path, monkeypatch)
        assert got.original_orientation == ref.original_orientation == codes
        assert got.spacing == ref.spacing and got.shape == ref.shape == array.shape
        assert got.array.flags['C_CONTIGUOUS'] and got.array.dtype == np.float32
        np.testing.assert_array_equal(got.array, ref.array)
        np.testing.assert_array_equal(got.array, array.astype(np.float32))
    assert len(used) == len(ORIENTATIONS)


def test_gzipped_nifti_slab_path_without_isal_and_with_scaling(tmp_path, monkeypatch):
    """Without python-isal the standard gzip module decompresses (same voxels); a scaled
    (scl_slope) or float image goes through ITK / nibabel as before."""
    import gzip

    from miqa_worker import image_io

    array = np.random.default_rng(1).integers(0, 3000, (30, 31, 32)).astype(np.int16)
    path = tmp_path / 'scan.nii.gz'
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))
    monkeypatch.setattr(image_io, '_gzip_opener', lambda: gzip.open)
    np.testing.assert_array_equal(read_volume(path).array, array.astype(np.float32))
    scaled = nib.Nifti1Image(array, AFFINE)
    scaled.header.set_slope_inter(0.5, 10.0)
    nib.save(scaled, str(path))
    assert not image_io._streams_into_float32(nib.load(str(path)), 3)
    np.testing.assert_allclose(read_volume(path).array, array * 0.5 + 10.0)


def test_gzipped_nifti_with_a_corrupt_stream_is_refused_in_one_line(tmp_path):
    """Damage in the middle of the compressed data (the gzip trailer still promises the full
    length) is refused with the reason, from the slab-by-slab path."""
    array = np.random.default_rng(2).integers(0, 3000, (128, 128, 130)).astype(np.int16)
    path = tmp_path / 'scan.nii.gz'
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as info:
        read_volume(path)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith('cannot read the image data (corrupt or truncated file?)')
