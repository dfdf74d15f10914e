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


def test_incompatible_or_corrupt_weights_are_model_errors(tmp_path):
    bad = tmp_path / 'bad'
    bad.mkdir()
    torch.save({'layer.weight': torch.zeros(3)}, bad / 'weights.pt')
    with pytest.raises(ModelError, match='does not fit the MIQA network'):
        load_model(bad)
    (bad / 'weights.pt').write_bytes(b'garbage')
    with pytest.raises(ModelError, match='cannot load'):
        load_model(bad)


def test_model_json_is_optional(model_path, tmp_path):
    bare = tmp_path / 'bare-model'
    bare.mkdir()
    (bare / 'weights.pt').write_bytes((model_path / 'weights.pt').read_bytes())
    info = load_model(bare)[1]
    assert info['name'] == 'bare-model' and info['version'] == 'unversioned'
    (bare / 'model.json').write_text(json.dumps({'name': 'x', 'version': '2'}))
    assert load_model(bare)[1]['version'] == '2'


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
    # without the entry the default widths are tried, which these weights do not fit
    info = json.loads((path / 'model.json').read_text())
    del info['channels']
    (path / 'model.json').write_text(json.dumps(info))
    with pytest.raises(ModelError, match='does not fit the MIQA network'):
        load_model(path)
    info['channels'] = [8, 16, 32]
    (path / 'model.json').write_text(json.dumps(info))
    with pytest.raises(ModelError, match='channels must be 5 positive integers'):
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

    for bad, reason in (('motion', 'must be a list'), (['motion', 'motion'], 'twice')):
        info = json.loads((path / 'model.json').read_text())
        info['penalty_families'] = bad
        (path / 'model.json').write_text(json.dumps(info))
        with pytest.raises(ModelError, match=reason):
            load_model(path)
    del info['penalty_families']  # then the weights do not fit the 11-output network
    (path / 'model.json').write_text(json.dumps(info))
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

    info = json.loads((path / 'model.json').read_text())
    for members, reason in ((['missing.pt'], 'is not a file'), (['../x.pt'], 'is not a file'),
                            ('member-1.pt', 'must be a list')):
        (path / 'model.json').write_text(json.dumps({**info, 'view_members': members}))
        with pytest.raises(ModelError, match=reason):
            Assessor(path, threads=1)
    torch.save(build_network((2, 2, 2, 2, 2)).state_dict(), path / 'member-1.pt')
    (path / 'model.json').write_text(json.dumps(info))
    with pytest.raises(ModelError, match='does not fit the network of weights.pt'):
        Assessor(path, threads=1)
