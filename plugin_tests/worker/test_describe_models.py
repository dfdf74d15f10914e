"""``miqa_worker.tasks.describe_models``: what a worker reports to the server about its models
(run in this process, as the worker's pool would; no broker, no network run)."""

import shutil

from .conftest import TEST_MODEL


def test_describe_models_reports_every_installed_model(model_dir, tmp_path, monkeypatch):
    from miqa_worker import model_store
    from miqa_worker.constants import DEFAULT_MODEL
    from miqa_worker.tasks import describe_models

    broken = tmp_path / 'broken-model'  # a model.json that cannot be read: not reported
    broken.mkdir()
    (broken / model_store.WEIGHTS_FILE).write_bytes(b'x')
    (broken / model_store.INFO_FILE).write_text('{not json', encoding='utf-8')
    shutil.copytree(model_dir / TEST_MODEL, tmp_path / TEST_MODEL)
    monkeypatch.setenv('MIQA_MODEL_DIR', str(tmp_path))

    answer = describe_models()
    assert answer['default'] == DEFAULT_MODEL
    models = {m['name']: m for m in answer['models']}
    assert set(models) == {DEFAULT_MODEL, TEST_MODEL}
    for name, model in models.items():
        weights = model_store.find_installed(name) / model_store.WEIGHTS_FILE
        assert model['sha256'] == model_store.sha256_file(weights)
        assert model['default'] is (name == DEFAULT_MODEL)
    assert models[TEST_MODEL]['version'] == '0.0.0-test'
    assert models[DEFAULT_MODEL]['version'] == model_store.read_info(
        model_store.find_installed(DEFAULT_MODEL))['version']
