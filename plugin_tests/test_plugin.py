"""The plugin loads in a real Girder and keeps torch out of the server process."""

import subprocess
import sys

import pytest
from pytest_girder.assertions import assertStatusOk


@pytest.mark.plugin('miqa')
def test_plugin_loads(server):
    from girder.plugin import loadedPlugins

    assert {'miqa', 'jobs', 'worker'} <= set(loadedPlugins())
    resp = server.request('/miqa/project')
    assertStatusOk(resp)
    assert resp.json == []


def test_server_side_imports_no_torch():
    """Everything the Girder process imports from this project, and nothing pulls in torch."""
    code = (
        'import sys, girder_miqa, girder_miqa.scheduling, girder_miqa.rest.item, '
        'miqa_worker, miqa_worker.tasks, miqa_worker.model_store\n'
        'bad = sorted(m for m in ("torch", "monai", "torchio", "itk") if m in sys.modules)\n'
        'assert not bad, bad\n'
    )
    subprocess.run([sys.executable, '-c', code], check=True)
