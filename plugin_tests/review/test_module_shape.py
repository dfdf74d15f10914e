"""The server's module shape (issue #20): no import cycle anywhere in girder_miqa (imports inside
functions included), the models import nothing above them, and only ``__init__`` binds events."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / 'girder_miqa'
ABOVE_THE_MODELS = ('girder_miqa.scheduling', 'girder_miqa.handlers', 'girder_miqa.rest')


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob('*.py'):
        if 'web_client' in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: the girder_miqa modules it imports, at any depth of its code}."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parent = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(parent + ([node.module] if node.module else []))
                targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in mods else base
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert 'girder_miqa.models.review_state' in graph['girder_miqa.models.project']
    assert 'girder_miqa.scheduling' in graph['girder_miqa.handlers']


def test_no_import_cycle():
    graph = import_graph()
    # the package itself imports everything it binds; its modules must not depend on each other
    # in a circle
    inner = {name: deps - {'girder_miqa'} for name, deps in graph.items()}
    assert find_cycle(inner) is None, ' -> '.join(find_cycle(inner))


def test_models_import_nothing_above_them():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith('girder_miqa.models'):
            above = sorted(d for d in deps if d.startswith(ABOVE_THE_MODELS))
            assert not above, f'{name} imports {above}'


def test_events_are_bound_in_one_place():
    binders = sorted(name for name, path in modules().items()
                     if 'events.bind(' in path.read_text())
    assert binders == ['girder_miqa']
