"""Model store: name and path lookup, MIQA_MODEL_DIR, clear errors, sha256, no downloads."""

import hashlib
import json

import numpy as np
import pytest
import torch

from miqa_worker.model_store import (
    PACKAGE_MODEL_DIR,
    ModelError,
    ModelNotFoundError,
    find_model,
    load_model,
)

from .conftest import TEST_MODEL


def test_load_by_path_gives_an_eval_network_and_its_sha256(model_path):
    network, info = load_model(model_path)
    assert not network.training
    assert info['name'] == TEST_MODEL and info['version'] == '0.0.0-test'
    assert 'TEST ONLY' in info['description'] and info['created']
    digest = hashlib.sha256((model_path / 'weights.pt').read_bytes()).hexdigest()
    assert info['sha256'] == digest
    with torch.inference_mode():
        assert network(torch.zeros(2, 1, 64, 64, 64)).shape == (2, 11)
    assert load_model(model_path / 'weights.pt')[1]['sha256'] == digest


def test_model_dir_environment_adds_a_search_directory(model_dir, monkeypatch):
    monkeypatch.setenv('MIQA_MODEL_DIR', str(model_dir))
    assert find_model(TEST_MODEL) == model_dir / TEST_MODEL
    assert load_model(TEST_MODEL)[1]['name'] == TEST_MODEL


def test_missing_model_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv('MIQA_MODEL_DIR', str(tmp_path))
    with pytest.raises(ModelNotFoundError) as info:
        load_model('nonexistent-model')
    message = str(info.value)
    assert str(tmp_path / 'nonexistent-model') in message
    assert str(PACKAGE_MODEL_DIR / 'nonexistent-model') in message
    assert 'MIQA_MODEL_DIR' in message and '\n' not in message
    with pytest.raises(ModelNotFoundError, match='no weights.pt in'):
        load_model(tmp_path / 'nowhere')


def _raw_spec(path):
    return json.loads((path / 'model.json').read_text())


def _write_spec(path, raw):
    (path / 'model.json').write_text(json.dumps(raw))


def test_incompatible_or_corrupt_weights_are_model_errors(tmp_path):
    from miqa_worker.model_spec import ModelSpec, save_spec

    bad = tmp_path / 'bad'
    bad.mkdir()
    save_spec(ModelSpec('bad', '1', 'test', '2026-01-01T00:00:00+00:00'), bad)
    torch.save({'layer.weight': torch.zeros(3)}, bad / 'weights.pt')
    with pytest.raises(ModelError, match='does not fit the MIQA network'):
        load_model(bad)
    (bad / 'weights.pt').write_bytes(b'garbage')
    with pytest.raises(ModelError, match='cannot load'):
        load_model(bad)


def test_model_json_is_required_and_an_older_one_is_refused_until_converted(model_path,
                                                                            tmp_path):
    """Weights without model.json, or with an older (unversioned) model.json, are refused in
    one line that says what to do; the converter makes the older file load."""
    from miqa_worker.model_spec import FORMAT_VERSION, upgrade_folder

    bare = tmp_path / 'bare-model'
    bare.mkdir()
    (bare / 'weights.pt').write_bytes((model_path / 'weights.pt').read_bytes())
    with pytest.raises(ModelError, match=r'model.json: missing in .*bare-model') as info:
        load_model(bare)
    assert '\n' not in str(info.value)
    (bare / 'model.json').write_text(json.dumps({'name': 'x', 'version': '2',
                                                 'view_flips': 2}))
    with pytest.raises(ModelError, match='an older model.json; convert it with') as info:
        load_model(bare)
    assert '\n' not in str(info.value)
    spec = upgrade_folder(bare)
    assert spec.view.flips == 2 and spec.format_version == FORMAT_VERSION
    info = load_model(bare)[1]
    assert (info['name'], info['version'], info['format_version']) == ('x', '2', FORMAT_VERSION)


def test_shipped_default_model_loads_when_present():
    """miqa_worker/models/miqa-default is picked up by name once training commits it."""
    if not (PACKAGE_MODEL_DIR / 'miqa-default' / 'weights.pt').is_file():
        pytest.skip('miqa_worker/models/miqa-default/weights.pt is not committed yet')
    network, info = load_model('miqa-default')
    assert info['name'] and info['version'] and len(info['sha256']) == 64


def test_model_json_channels_pick_the_network_width(tmp_path):
    """A model trained with other stage widths names them in model.json and loads with them."""
    from miqa_worker.model_store import save_model
    from miqa_worker.network import build_network

    wide = (8, 16, 32, 64, 128)
    path = save_model(build_network(wide), tmp_path / 'wide', 'wide', '1', 'test',
                      channels=list(wide))
    network, _ = load_model(path)
    assert network(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 11)
    assert sum(p.numel() for p in network.parameters()) == sum(
        p.numel() for p in build_network(wide).parameters())
    # with the default widths named, these weights do not fit; a missing entry is refused
    info = _raw_spec(path)
    info['network']['channels'] = [4, 8, 16, 32, 64]
    _write_spec(path, info)
    with pytest.raises(ModelError, match='does not fit the MIQA network'):
        load_model(path)
    info['network']['channels'] = [8, 16, 32]
    _write_spec(path, info)
    with pytest.raises(ModelError, match=r'network.channels must be 5 integers in 1..4096'):
        load_model(path)
    del info['network']['channels']
    _write_spec(path, info)
    with pytest.raises(ModelError, match='network.channels is missing'):
        load_model(path)


def test_penalty_outputs_are_named_in_model_json_and_reported(tmp_path):
    """A network with outputs for each family's quality points loads with model.json's
    ``penalty_families``, and the worker reports those points beside the 11 outputs."""
    from miqa_worker.assessment import Assessor
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.model_store import save_model
    from miqa_worker.network import build_network

    torch.manual_seed(0)
    path = save_model(build_network(None, 2), tmp_path / 'points', 'points', '1', 'test',
                      penalty_families=['motion', 'noise'], global_view_weight=0.5)
    network, info = load_model(path)
    assert network(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 13)
    volume = np.random.default_rng(0).random((70, 64, 60), dtype=np.float32)
    result = Assessor(path, threads=1).assess_volume(
        ScanVolume(volume, (1.0, 1.0, 1.0), 'RAS', 'array'), metrics=False)
    assert list(result['penalties']) == ['motion', 'noise']
    assert all(p >= 0 for p in result['penalties'].values())
    assert len(result['artifacts']) == 10 and 0 <= result['quality'] <= 10
    assert len(result['globalView']['artifacts']) == 10
    # the extra outputs are the mean over tiles blended with the view at the quality's share
    plain = Assessor(path, threads=1)
    tiles_out, view_out = plain.predict_with_view(*_tiles_and_view(volume))
    expected = 0.5 * tiles_out[:, 11:].astype(np.float64).mean(axis=0) + 0.5 * view_out[11:]
    assert np.allclose(list(result['penalties'].values()), np.maximum(expected, 0), atol=1e-5)

    info = _raw_spec(path)
    assert info['postprocessing'] == {'penalty_families': ['motion', 'noise']}
    for bad, reason in (('motion', 'postprocessing.penalty_families must be a list of names'),
                        (['motion', 'motion'], 'more than once')):
        info['postprocessing']['penalty_families'] = bad
        _write_spec(path, info)
        with pytest.raises(ModelError, match=reason):
            load_model(path)
    info['postprocessing']['penalty_families'] = []  # the weights do not fit 11 outputs
    _write_spec(path, info)
    with pytest.raises(ModelError, match='does not fit the MIQA network'):
        load_model(path)


def _tiles_and_view(volume):
    """The normalised tiles and whole-volume view the worker makes of ``volume``."""
    from miqa_worker.assessment import make_tiles, whole_view
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.preprocessing import intensity_range

    value_range = intensity_range(volume)
    tiles, _, _, _ = make_tiles(volume, value_range=value_range)
    return tiles, whole_view(ScanVolume(volume, (1.0, 1.0, 1.0), 'RAS', 'array'), value_range)


def test_view_members_average_their_whole_volume_views(tmp_path):
    """model.json ``view_members``: networks of other seeds whose view outputs are averaged
    with the model's own (its tiles stay its own); a bad member fails with the reason."""
    from miqa_worker.assessment import Assessor
    from miqa_worker.image_io import ScanVolume
    from miqa_worker.model_store import save_model
    from miqa_worker.network import build_network

    torch.manual_seed(0)
    main, member = build_network(), build_network()
    path = save_model(main, tmp_path / 'ens', 'ens', '1', 'test', global_view_weight=0.5,
                      view_flips=2, view_members=['member-1.pt'])
    torch.save(member.state_dict(), path / 'member-1.pt')
    volume = np.random.default_rng(1).random((66, 70, 64), dtype=np.float32)
    tiles, view = _tiles_and_view(volume)
    assessor = Assessor(path, threads=1)
    assert len(assessor.members) == 1
    tile_out, view_out = assessor.predict_with_view(tiles, view)
    alone = Assessor(path, threads=1)
    alone.members = []
    own_tiles, own_view = alone.predict_with_view(tiles, view)
    member_view = alone.predict_tiles(np.stack([view, view[::-1]]), assessor.members[0])
    assert np.allclose(tile_out, own_tiles)
    assert np.allclose(view_out, (own_view + member_view.astype(np.float64).mean(axis=0)) / 2,
                       atol=1e-5)
    result = assessor.assess_volume(ScanVolume(volume, (1.0, 1.0, 1.0), 'RAS', 'array'),
                                    metrics=False)
    assert result['globalView']['networks'] == 2 and result['globalView']['flips'] == 2

    info = _raw_spec(path)
    assert info['members'] == ['member-1.pt']
    for members, reason in ((['missing.pt'], 'is not a file'),
                            (['../x.pt'], 'members must hold plain file names'),
                            ('member-1.pt', 'members must be a list of file names'),
                            (['weights.pt'], 'must not name weights.pt')):
        _write_spec(path, {**info, 'members': members})
        with pytest.raises(ModelError, match=reason):
            Assessor(path, threads=1)
    torch.save(build_network((2, 2, 2, 2, 2)).state_dict(), path / 'member-1.pt')
    _write_spec(path, info)
    with pytest.raises(ModelError, match='does not fit the network of weights.pt'):
        Assessor(path, threads=1)
