"""Fixtures of the browser tests."""

import pytest


@pytest.fixture
def miqa_browser_server(request, db):
    """pytest-girder's boundServer with /plugin_static/miqa mounted in this server's tree.

    Girder mounts a plugin's static directory only the first time the plugin loads in a process;
    earlier tests in the same session would leave this server's tree without it.
    """
    from girder import plugin

    getattr(plugin, '_pluginStaticContent', {}).pop('miqa', None)
    return request.getfixturevalue('boundServer')
