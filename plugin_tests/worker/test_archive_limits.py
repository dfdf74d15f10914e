"""Zipped DICOM series: the expanded size is bounded (MIQA_MAX_ARCHIVE_BYTES) before and during
extraction; models are plain installed names, never paths."""

import struct
import zipfile

import pytest

from miqa_worker.image_io import ImageError, read_volume


def _big_zip(path, members=2, size=300_000):
    """Zeros compress to almost nothing: a small file that declares ``members * size`` bytes."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for number in range(members):
            zf.writestr(f'series/IM{number:04d}.dcm', b'\0' * size)
    return path


def test_archive_refused_from_declared_sizes(tmp_path, monkeypatch):
    archive = _big_zip(tmp_path / 'bomb.zip')
    assert archive.stat().st_size < 10_000
    monkeypatch.setenv('MIQA_MAX_ARCHIVE_BYTES', '500000')
    with pytest.raises(ImageError) as info:
        read_volume(archive)
    message = str(info.value)
    assert 'MIQA_MAX_ARCHIVE_BYTES' in message and '600,000' in message and '500,000' in message
    assert '\n' not in message and 'before extracting' in message


def test_default_limit_is_two_gib(monkeypatch):
    from miqa_worker import image_io

    monkeypatch.delenv('MIQA_MAX_ARCHIVE_BYTES', raising=False)
    assert image_io.max_archive_bytes() == 2 * 1024 ** 3
    monkeypatch.setenv('MIQA_MAX_ARCHIVE_BYTES', 'lots')
    assert image_io.max_archive_bytes() == 2 * 1024 ** 3
    monkeypatch.setenv('MIQA_MAX_ARCHIVE_BYTES', '1000')
    assert image_io.max_archive_bytes() == 1000


def _lie_about_sizes(path, declared: int) -> None:
    """Rewrite every member's uncompressed size (local and central headers) to ``declared``."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b'PK\x03\x04', 22), (b'PK\x01\x02', 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset:start + offset + 4] = struct.pack('<I', declared)
            start += 4
    path.write_bytes(bytes(data))


def test_lying_headers_stop_extraction(tmp_path, monkeypatch):
    archive = _big_zip(tmp_path / 'liar.zip', members=3, size=400_000)
    _lie_about_sizes(archive, 10)  # declares 30 bytes in all, holds 1.2 MB
    monkeypatch.setenv('MIQA_MAX_ARCHIVE_BYTES', '500000')
    with pytest.raises(ImageError) as info:
        read_volume(archive)
    assert '\n' not in str(info.value)


@pytest.mark.parametrize('name', ['../../etc', '/etc/passwd', '..', 'a/b', '', None, 'nope'])
def test_worker_takes_only_installed_model_names(name, tmp_path, monkeypatch):
    from miqa_worker.model_store import ModelNotFoundError, find_installed

    (tmp_path / 'weights.pt').write_bytes(b'x')  # a model folder outside the search dirs
    (tmp_path / 'model.json').write_text('{}')
    monkeypatch.delenv('MIQA_MODEL_DIR', raising=False)
    with pytest.raises(ModelNotFoundError) as info:
        find_installed(str(tmp_path) if name == 'a/b' else name)
    message = str(info.value)
    assert 'miqa-default' in message and str(tmp_path) not in message and '/etc' not in message
    assert find_installed('miqa-default').name == 'miqa-default'


def test_worker_refuses_a_symlink_out_of_the_models_folder(tmp_path, monkeypatch):
    from miqa_worker.model_store import ModelNotFoundError, find_installed

    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'weights.pt').write_bytes(b'x')
    (outside / 'model.json').write_text('{}')
    models = tmp_path / 'models'
    models.mkdir()
    (models / 'sneaky').symlink_to(outside)
    monkeypatch.setenv('MIQA_MODEL_DIR', str(models))
    with pytest.raises(ModelNotFoundError):
        find_installed('sneaky')
