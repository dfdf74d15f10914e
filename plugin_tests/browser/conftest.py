"""Fixtures of the browser tests."""

import pytest


@pytest.fixture
def miqa_browser_server(request, db):
    """pytest-girder's boundServer with every plugin's /plugin_static/ mounted in its tree.

    Girder mounts a plugin's static directory only the first time the plugin loads in a process;
    after earlier tests in the same session this server's tree would lack them (and the web
    client waits forever for a plugin script that 404s). Forgetting them makes each plugin's
    load() mount its directory again.
    """
    from girder import plugin

    plugin._pluginStaticContent.clear()
    return request.getfixturevalue('boundServer')
