"""One indicator decided by the network together with background metrics (``fusion.json``).

The network reads motion and ghosting poorly where noise is also present: both raise the air
around the head, and a 64^3 tile cannot tell evenly spread noise from copies of the head's
edges. The metrics of :func:`quality_metrics.background_metrics` can. A model folder may carry
``fusion.json``: gradient-boosted trees (fitted by ``miqa_worker.training.fusion``) whose inputs
are the network's logit of one indicator and those metrics of the normalised volume; their
output replaces that indicator's probability. Pure numpy, no pickle: the trees are arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .constants import ARTIFACT_KEYS
from .quality_metrics import BACKGROUND_METRICS, background_metrics

FUSION_FILE = 'fusion.json'
NETWORK_INPUT = 'network_logit'
FORMAT = 'miqa-fusion-trees/1'


class FusionError(ValueError):
    """A ``fusion.json`` that cannot be used; the message says what is wrong."""


def network_logit(probability: float | np.ndarray) -> float | np.ndarray:
    """The logit of the network's (blended) probability: the trees' first input."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-6, 1 - 1e-6)
    out = np.log(p / (1 - p))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class TreeEnsemble:
    """Boosted regression trees: ``init + rate * sum(tree values)`` is a logit.

    Each tree is five arrays over its nodes: ``feature`` and ``threshold`` (go left when the
    input is ``<= threshold``), ``left`` and ``right`` (child node, -1 at a leaf) and ``value``
    (the leaf's output).
    """

    init: float
    rate: float
    trees: tuple[dict[str, np.ndarray], ...]

    @classmethod
    def from_dict(cls, spec: dict[str, Any], n_inputs: int) -> TreeEnsemble:
        """Validated trees from their JSON form; FusionError on anything malformed."""
        try:
            init, rate = float(spec['init']), float(spec['learning_rate'])
            trees = []
            for raw in spec['trees']:
                tree = {'feature': np.asarray(raw['feature'], dtype=np.int64),
                        'threshold': np.asarray(raw['threshold'], dtype=np.float64),
                        'left': np.asarray(raw['left'], dtype=np.int64),
                        'right': np.asarray(raw['right'], dtype=np.int64),
                        'value': np.asarray(raw['value'], dtype=np.float64)}
                trees.append(tree)
        except (KeyError, TypeError, ValueError) as exc:
            raise FusionError(f'malformed trees: {type(exc).__name__}: {exc}') from None
        if not trees or not (math.isfinite(init) and math.isfinite(rate)):
            raise FusionError('the trees need a finite init, learning_rate and one tree or more')
        for number, tree in enumerate(trees):
            size = tree['left'].shape
            if len(size) != 1 or size[0] == 0 or any(a.shape != size for a in tree.values()):
                raise FusionError(f'tree {number}: its node arrays differ in length')
            inner = tree['left'] >= 0
            parents = np.flatnonzero(inner)
            # children after their parent: every walk down the tree ends at a leaf
            if (np.any((tree['right'] >= 0) != inner)
                    or np.any(tree['left'][inner] <= parents)
                    or np.any(tree['right'][inner] <= parents)
                    or np.any(tree['left'][inner] >= size[0])
                    or np.any(tree['right'][inner] >= size[0])):
                raise FusionError(f'tree {number}: a child index points outside or backwards')
            if np.any((tree['feature'][inner] < 0) | (tree['feature'][inner] >= n_inputs)):
                raise FusionError(f'tree {number}: a feature index is not one of the '
                                  f'{n_inputs} inputs')
            if not np.all(np.isfinite(tree['value'])) or not np.all(
                    np.isfinite(tree['threshold'][inner])):
                raise FusionError(f'tree {number}: values and thresholds must be finite')
        return cls(init, rate, tuple(trees))

    def logit(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for inputs ``[N, F]``: every tree walked at once, one level per step."""
        # compared in float32 as scikit-learn's trees do, so a fitted model scores the same
        inputs = np.atleast_2d(np.asarray(inputs, dtype=np.float32)).astype(np.float64)
        feature, threshold, left, right, value = self._packed()
        trees = np.arange(len(feature))[:, None]
        node = np.zeros((len(feature), len(inputs)), dtype=np.int64)
        rows = np.arange(len(inputs))[None, :]
        while True:
            inner = left[trees, node] >= 0
            if not inner.any():
                break
            go_left = inputs[rows, np.maximum(feature[trees, node], 0)] <= threshold[trees, node]
            child = np.where(go_left, left[trees, node], right[trees, node])
            node = np.where(inner, child, node)
        return self.init + self.rate * value[trees, node].sum(axis=0)

    def _packed(self) -> tuple[np.ndarray, ...]:
        """The trees as [trees, nodes] arrays (padded with leaves), built once."""
        cached = self.__dict__.get('_packed_arrays')
        if cached is None:
            width = max(len(t['left']) for t in self.trees)
            fills = {'feature': -1, 'threshold': 0.0, 'left': -1, 'right': -1, 'value': 0.0}
            cached = tuple(
                np.stack([np.pad(t[name], (0, width - len(t[name])),
                                 constant_values=fills[name]) for t in self.trees])
                for name in ('feature', 'threshold', 'left', 'right', 'value'))
            object.__setattr__(self, '_packed_arrays', cached)
        return cached


@dataclass(frozen=True)
class Fusion:
    """``fusion.json`` loaded: which indicator, from which inputs, with which trees."""

    indicator: str
    inputs: tuple[str, ...]
    max_voxels: int
    trees: TreeEnsemble
    info: dict[str, Any]

    @property
    def index(self) -> int:
        """The indicator's position in ``ARTIFACT_KEYS``."""
        return ARTIFACT_KEYS.index(self.indicator)

    def features(self, normalised: np.ndarray) -> dict[str, float]:
        """The background metrics of a 0..1 normalised volume, as the training volumes had."""
        return background_metrics(normalised, self.max_voxels)

    def input_row(self, logit: float, metrics: dict[str, float]) -> np.ndarray:
        """The trees' input vector, in ``inputs`` order (``logit``: the network's)."""
        values = {**metrics, NETWORK_INPUT: float(logit)}
        return np.array([values[name] for name in self.inputs], dtype=np.float64)

    def probability(self, network_probability: float, metrics: dict[str, float]) -> float:
        """The fused probability of the indicator, from the network's and the metrics."""
        row = self.input_row(network_logit(network_probability), metrics)
        logit = float(self.trees.logit(row[None])[0])
        return float(1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0))))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``fusion.json``)."""
        return {**self.info, 'format': FORMAT, 'indicator': self.indicator,
                'inputs': list(self.inputs), 'max_voxels': self.max_voxels,
                'init': self.trees.init, 'learning_rate': self.trees.rate,
                'trees': [{k: v.tolist() for k, v in tree.items()} for tree in self.trees.trees]}


def fusion_from_dict(spec: Any) -> Fusion:
    """A validated :class:`Fusion`; FusionError naming the first problem."""
    if not isinstance(spec, dict):
        raise FusionError('fusion.json must hold a JSON object')
    if spec.get('format') != FORMAT:
        raise FusionError(f'unknown format {spec.get("format")!r} (expected {FORMAT!r})')
    indicator = spec.get('indicator')
    if indicator not in ARTIFACT_KEYS:
        raise FusionError(f'unknown indicator {indicator!r}')
    inputs = spec.get('inputs')
    known = {NETWORK_INPUT, *BACKGROUND_METRICS}
    if (not isinstance(inputs, list) or not inputs
            or not all(isinstance(n, str) and n in known for n in inputs)
            or len(set(inputs)) != len(inputs)):
        raise FusionError(f'inputs must be distinct names among {NETWORK_INPUT} and the '
                          'background metrics')
    max_voxels = spec.get('max_voxels')
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, int) or max_voxels < 4096:
        raise FusionError('max_voxels must be an integer of at least 4096')
    info = {k: v for k, v in spec.items() if k in ('fitted_on', 'method', 'scores')}
    return Fusion(indicator, tuple(inputs), max_voxels,
                  TreeEnsemble.from_dict(spec, len(inputs)), info)


def load_fusion(model_dir: Path | str | None) -> Fusion | None:
    """The model folder's fusion, or None when it has no ``fusion.json``."""
    if model_dir is None:
        return None
    path = Path(model_dir) / FUSION_FILE
    if not path.is_file():
        return None
    return load_fusion_file(path)


def load_fusion_file(path: Path | str) -> Fusion:
    """A validated fusion read from its JSON file; FusionError naming the problem."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise FusionError(f'unreadable {path}: {exc}') from None
    return fusion_from_dict(spec)
