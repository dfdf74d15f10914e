"""``model.json``: the versioned, validated description of a MIQA model folder.

One typed object (:class:`ModelSpec`, frozen dataclasses) says everything the assessor needs to
run a model and everything a reader needs to judge where it applies: the model's domain, which
outputs were trained, the network, the tiles, the whole-volume view, the view members, the
fused indicator and the post-processing. :func:`load_spec` refuses an unknown format version,
or a missing, unknown or bad field, with one line naming it (:class:`ModelSpecError`);
:func:`save_spec` is the only writer of ``model.json``. An older ``model.json`` (a bag of
optional flags, no ``format_version``) is refused with the way out: :func:`upgrade_v1`, or
``python -m miqa_worker.model_spec upgrade MODEL_DIR``.

Pure Python: no torch, no numpy, no Girder.
"""

from __future__ import annotations

import bisect
import datetime
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import ARTIFACT_KEYS, INTENSITY_PERCENTILES, NETWORK_CHANNELS, TILE_SIZE

FORMAT_VERSION = 'miqa-model/2'
SPEC_FILE = 'model.json'
FUSION_FILE = 'fusion.json'
WEIGHTS_FILE = 'weights.pt'

#: The network's first 11 outputs: overall quality, then the ten indicators.
OUTPUT_NAMES: tuple[str, ...] = ('quality', *ARTIFACT_KEYS)
#: How many mirror images of the whole-volume view there are (``assessment.FLIPS``).
FLIP_COUNT = 8
#: The one network builder a model may name (a model file never picks code to import).
BUILDER = 'miqa_worker.network.build_network'
#: How tiles cover a volume (``tiling.tile_grid``) and how short axes are filled
#: (``tiling.pad_to_tile``): the only ones the assessor implements.
TILE_LAYOUT = 'fewest-evenly-spread'
TILE_PADDING = 'zeros-after'
LABEL_KINDS = ('simulated', 'reviewed', 'mixed')


class ModelSpecError(ValueError):
    """A ``model.json`` that cannot be used; the message is one line naming the field."""


def _show(value: Any) -> str:
    """A value as the error message quotes it (JSON, shortened)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


class _Fields:
    """The fields of one JSON object, taken one by one; what is left over is refused.

    ``where`` is the object's dotted path ("view"), so every error names ``view.flips``.
    """

    def __init__(self, raw: Any, where: str, source: str):
        self.source, self.where = source, where
        if not isinstance(raw, Mapping):
            raise self.error(f'{where or "the file"} must be a JSON object, got {_show(raw)}')
        self.raw = dict(raw)
        self.seen: set[str] = set()

    def error(self, message: str) -> ModelSpecError:
        return ModelSpecError(f'{self.source}: {message}')

    def path(self, key: str) -> str:
        return f'{self.where}.{key}' if self.where else key

    def take(self, key: str, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.raw:
            if default is ...:
                raise self.error(f'{self.path(key)} is missing')
            return default
        return self.raw[key]

    def text(self, key: str, default: Any = ...) -> str:
        value = self.take(key, default)
        if not isinstance(value, str) or not value.strip() or '\n' in value:
            raise self.error(f'{self.path(key)} must be a non-empty one-line string, '
                             f'got {_show(value)}')
        return value

    def number(self, key: str, low: float, high: float, value: Any = ...) -> float:
        value = self.take(key) if value is ... else value
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low <= value <= high):
            raise self.error(f'{self.path(key)} must be a number in {low:g}..{high:g}, '
                             f'got {_show(value)}')
        return float(value)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.take(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(f'{self.path(key)} must be an integer in {low}..{high}, '
                             f'got {_show(value)}')
        return value

    def exactly(self, key: str, expected: Any, why: str) -> Any:
        value = self.take(key)
        if value != expected or isinstance(value, bool) != isinstance(expected, bool):
            raise self.error(f'{self.path(key)} must be {_show(expected)} ({why}), '
                             f'got {_show(value)}')
        return value

    def names(self, key: str, allowed: Sequence[str] | None = None, *, file_names: bool = False,
              non_empty: bool = False) -> tuple[str, ...]:
        """A list of distinct strings (among ``allowed``; plain file names)."""
        value = self.take(key)
        what = 'file names' if file_names else 'names'
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(f'{self.path(key)} must be a list of {what}, got {_show(value)}')
        if non_empty and not value:
            raise self.error(f'{self.path(key)} must name at least one')
        if len(set(value)) != len(value):
            raise self.error(f'{self.path(key)} names {_show(value)} more than once')
        for item in value:
            if allowed is not None and item not in allowed:
                raise self.error(f'{self.path(key)} names unknown {_show(item)} (known: '
                                 f'{", ".join(allowed)})')
            if file_names and not _plain_file_name(item):
                raise self.error(f'{self.path(key)} must hold plain file names in the model '
                                 f'folder, got {_show(item)}')
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise self.error(f'unknown field {self.path(unknown[0])}')


def _plain_file_name(name: str) -> bool:
    return (bool(name) and Path(name).name == name and name not in ('.', '..')
            and '\\' not in name and name != SPEC_FILE)


@dataclass(frozen=True)
class Domain:
    """Where the model applies: what it was trained on, so a scan outside it can be told.

    Args:
        modality: imaging modality (DICOM's code, e.g. "MR").
        anatomy: the body part the training volumes showed.
        contrasts: the contrasts of the training volumes (BIDS suffixes, e.g. "T1w").
        dimensions: spatial dimensions of one input volume (the assessor reads 3D).
        volumes: volumes assessed per scan (1: a 4D series is assessed by its first volume).
        labels: where the training labels came from: simulated, reviewed or mixed.
        notes: one line on anything else a user must know of the domain.
    """

    modality: str = 'MR'
    anatomy: str = 'head'
    contrasts: tuple[str, ...] = ('T1w',)
    dimensions: int = 3
    volumes: int = 1
    labels: str = 'simulated'
    notes: str = ('trained on simulated artifacts added to volumes generated from a few real '
                  'scans and MNI152 (see MODEL_CARD.md); other contrasts, CT and 4D series '
                  'are out of distribution')

    @classmethod
    def parse(cls, raw: Any, source: str) -> Domain:
        fields = _Fields(raw, 'domain', source)
        out = cls(modality=fields.text('modality'), anatomy=fields.text('anatomy'),
                  contrasts=fields.names('contrasts', non_empty=True),
                  dimensions=fields.exactly('dimensions', 3, 'the assessor reads 3D volumes'),
                  volumes=fields.exactly('volumes', 1, 'one volume is assessed per scan'),
                  labels=fields.take('labels'), notes=fields.text('notes'))
        if out.labels not in LABEL_KINDS:
            raise fields.error(f'domain.labels must be one of {", ".join(LABEL_KINDS)}, '
                               f'got {_show(out.labels)}')
        fields.done()
        return out

    def to_json(self) -> dict[str, Any]:
        return {'modality': self.modality, 'anatomy': self.anatomy,
                'contrasts': list(self.contrasts), 'dimensions': self.dimensions,
                'volumes': self.volumes, 'labels': self.labels, 'notes': self.notes}


@dataclass(frozen=True)
class Outputs:
    """The network's outputs: always :data:`OUTPUT_NAMES`, and which of them were trained.

    Args:
        trained: the outputs trained with labels, in output order; the others were never
            trained (their labels were unknown) and their values are meaningless.
    """

    trained: tuple[str, ...] = OUTPUT_NAMES

    @property
    def untrained(self) -> tuple[str, ...]:
        return tuple(name for name in OUTPUT_NAMES if name not in self.trained)

    @classmethod
    def parse(cls, raw: Any, source: str) -> Outputs:
        fields = _Fields(raw, 'outputs', source)
        fields.exactly('names', list(OUTPUT_NAMES), 'the network\'s outputs in order')
        trained = fields.names('trained', OUTPUT_NAMES, non_empty=True)
        fields.done()
        return cls(tuple(name for name in OUTPUT_NAMES if name in trained))

    def to_json(self) -> dict[str, Any]:
        return {'names': list(OUTPUT_NAMES), 'trained': list(self.trained)}


@dataclass(frozen=True)
class NetworkSpec:
    """The network of ``weights.pt``.

    Args:
        channels: the widths of the five strided stages (``network.build_network``).
    """

    channels: tuple[int, ...] = NETWORK_CHANNELS
    builder: str = BUILDER
    weights: str = WEIGHTS_FILE

    @classmethod
    def parse(cls, raw: Any, source: str) -> NetworkSpec:
        fields = _Fields(raw, 'network', source)
        fields.exactly('builder', BUILDER, 'the MIQA network')
        fields.exactly('weights', WEIGHTS_FILE, 'the model folder\'s weights')
        channels = fields.take('channels')
        if (not isinstance(channels, list) or len(channels) != len(NETWORK_CHANNELS)
                or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 4096
                           for c in channels)):
            raise fields.error(f'network.channels must be {len(NETWORK_CHANNELS)} integers in '
                               f'1..4096 (one per stage), got {_show(channels)}')
        fields.done()
        return cls(tuple(channels))

    def to_json(self) -> dict[str, Any]:
        return {'builder': self.builder, 'weights': self.weights,
                'channels': list(self.channels)}


@dataclass(frozen=True)
class TileSpec:
    """How a volume becomes the network's inputs: percentile-rescaled, then 64^3 tiles.

    Args:
        size: tile edge in voxels (the network's input).
        layout: how tiles cover a volume: the fewest per axis, spread evenly from 0 to the end.
        padding: axes shorter than a tile are zero-filled after the data.
        intensity: the percentiles mapped to 0 and 1 (``preprocessing.intensity_range``).
    """

    size: int = TILE_SIZE
    layout: str = TILE_LAYOUT
    padding: str = TILE_PADDING
    intensity: tuple[float, float] = INTENSITY_PERCENTILES

    @classmethod
    def parse(cls, raw: Any, source: str) -> TileSpec:
        fields = _Fields(raw, 'tiles', source)
        out = cls(size=fields.exactly('size', TILE_SIZE, 'the network\'s input'),
                  layout=fields.exactly('layout', TILE_LAYOUT, 'the layout the worker tiles'),
                  padding=fields.exactly('padding', TILE_PADDING, 'the worker\'s padding'),
                  intensity=tuple(fields.exactly(
                      'intensity', list(INTENSITY_PERCENTILES),
                      'the percentiles the worker rescales')))
        fields.done()
        return out

    def to_json(self) -> dict[str, Any]:
        return {'size': self.size, 'layout': self.layout, 'padding': self.padding,
                'intensity': list(self.intensity)}


@dataclass(frozen=True)
class ViewSpec:
    """The whole volume seen as one more 64^3 input (``tiling.global_view``) and its share.

    Args:
        weight: the view's share in every output ``weights`` does not name (the training
            share; 0 and no ``weights``: tiles only).
        weights: the view's share per output name, chosen by cross-validation.
        flips: how many mirror images of the view are averaged (``assessment.FLIPS``).
    """

    weight: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    flips: int = 1

    def shares(self) -> tuple[float, ...]:
        """The view's share in each of the 11 outputs, in :data:`OUTPUT_NAMES` order."""
        return tuple(float(self.weights.get(name, self.weight)) for name in OUTPUT_NAMES)

    @property
    def used(self) -> bool:
        """Whether the view counts at all (some output gives it a share)."""
        return any(self.shares())

    @classmethod
    def parse(cls, raw: Any, source: str) -> ViewSpec:
        fields = _Fields(raw, 'view', source)
        weight = fields.number('weight', 0, 1)
        per_output = _Fields(fields.take('weights'), 'view.weights', source)
        weights = {}
        for name in OUTPUT_NAMES:
            if name in per_output.raw:
                weights[name] = per_output.number(name, 0, 1, per_output.take(name))
        per_output.done()
        flips = fields.integer('flips', 1, FLIP_COUNT)
        fields.done()
        return cls(weight, weights, flips)

    def to_json(self) -> dict[str, Any]:
        return {'weight': self.weight, 'weights': dict(self.weights), 'flips': self.flips}


@dataclass(frozen=True)
class FusionSpec:
    """One indicator decided by boosted trees over the network and background metrics.

    Args:
        indicator: the output whose probability the trees replace.
        file: the trees (``fusion.json`` in the model folder, :mod:`miqa_worker.fusion`).
    """

    indicator: str
    file: str = FUSION_FILE

    @classmethod
    def parse(cls, raw: Any, source: str) -> FusionSpec | None:
        if raw is None:
            return None
        fields = _Fields(raw, 'fusion', source)
        indicator = fields.take('indicator')
        if indicator not in ARTIFACT_KEYS:
            raise fields.error(f'fusion.indicator must be one of the indicators, '
                               f'got {_show(indicator)}')
        file = fields.text('file')
        if not _plain_file_name(file):
            raise fields.error(f'fusion.file must be a plain file name in the model folder, '
                               f'got {_show(file)}')
        fields.done()
        return cls(indicator, file)

    def to_json(self) -> dict[str, Any]:
        return {'indicator': self.indicator, 'file': self.file}


#: How a trained indicator's probability may be recalibrated (:class:`IndicatorCalibration`).
CALIBRATION_METHODS = ('identity', 'platt', 'isotonic')
#: How the quality interval is made (:class:`QualityInterval`).
INTERVAL_METHODS = ('member-flip-spread',)
#: The most breakpoints an isotonic map may have (a fitted map has at most one per volume).
MAX_BREAKPOINTS = 2000


def _logit(p: float) -> float:
    """log(p / (1 - p)), with p kept 1e-6 inside (0, 1)."""
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class IndicatorCalibration:
    """The map from one indicator's probability to its calibrated probability.

    Args:
        method: ``identity`` (kept as it is), ``platt`` (``sigmoid(slope * logit(p) +
            intercept)``) or ``isotonic`` (piecewise linear through the breakpoints, flat
            outside them).
        slope: Platt's slope on the logit (``platt`` only; > 0 keeps the ranking).
        intercept: Platt's intercept (``platt`` only).
        x: isotonic breakpoints, strictly increasing probabilities in 0..1.
        y: the calibrated probability at each breakpoint, non-decreasing in 0..1.
    """

    method: str = 'identity'
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, probability: float) -> float:
        """The calibrated probability of ``probability``."""
        p = float(probability)
        if self.method == 'platt':
            z = self.slope * _logit(p) + self.intercept
            return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        if self.method == 'isotonic':
            if p <= self.x[0]:
                return self.y[0]
            if p >= self.x[-1]:
                return self.y[-1]
            right = bisect.bisect_right(self.x, p)
            x0, x1, y0, y1 = self.x[right - 1], self.x[right], self.y[right - 1], self.y[right]
            return y0 + (y1 - y0) * (p - x0) / (x1 - x0)
        return p

    @classmethod
    def parse(cls, raw: Any, where: str, source: str) -> IndicatorCalibration:
        fields = _Fields(raw, where, source)
        method = fields.take('method')
        if method not in CALIBRATION_METHODS:
            raise fields.error(f'{where}.method must be one of {", ".join(CALIBRATION_METHODS)}, '
                               f'got {_show(method)}')
        if method == 'identity':
            out = cls()
        elif method == 'platt':
            out = cls('platt', slope=fields.number('slope', 1e-3, 1e3),
                      intercept=fields.number('intercept', -1e3, 1e3))
        else:
            x, y = fields.take('x'), fields.take('y')
            for key, values in (('x', x), ('y', y)):
                if (not isinstance(values, list) or not 2 <= len(values) <= MAX_BREAKPOINTS
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) and 0 <= v <= 1 for v in values)):
                    raise fields.error(f'{where}.{key} must be 2..{MAX_BREAKPOINTS} numbers in '
                                       f'0..1, got {_show(values)}')
            if len(x) != len(y):
                raise fields.error(f'{where}.x and {where}.y must be as long, got {len(x)} and '
                                   f'{len(y)}')
            if any(b <= a for a, b in zip(x, x[1:], strict=False)):
                raise fields.error(f'{where}.x must be strictly increasing, got {_show(x)}')
            if any(b < a for a, b in zip(y, y[1:], strict=False)):
                raise fields.error(f'{where}.y must be non-decreasing, got {_show(y)}')
            out = cls('isotonic', x=tuple(map(float, x)), y=tuple(map(float, y)))
        fields.done()
        return out

    def to_json(self) -> dict[str, Any]:
        if self.method == 'platt':
            return {'method': 'platt', 'slope': self.slope, 'intercept': self.intercept}
        if self.method == 'isotonic':
            return {'method': 'isotonic', 'x': list(self.x), 'y': list(self.y)}
        return {'method': 'identity'}


@dataclass(frozen=True)
class QualityInterval:
    """How the quality's interval is made from the spread of the view's predictions.

    The whole-volume view is run as ``view.flips`` mirror images in every network
    (``1 + len(members)``); the interval is the quality ± ``scale * sqrt(sd^2 + floor^2)``,
    ``sd`` the standard deviation of the quality blended with each of those predictions,
    clipped to 0..10. ``scale`` and ``floor`` were fitted so that it covers the true quality
    of ``level`` of the fitting volumes.

    Args:
        method: ``member-flip-spread``, the one way implemented.
        scale: the factor the spread is widened by.
        floor: quality points added (in quadrature) to the spread, so that a scan whose
            networks agree still gets an interval.
        level: the share of fitting volumes whose true quality the interval covers.
    """

    method: str = 'member-flip-spread'
    scale: float = 1.0
    floor: float = 0.0
    level: float = 0.8

    def half_width(self, spread: float) -> float:
        """Half the interval's width for a spread (sd) of ``spread`` quality points."""
        return self.scale * math.sqrt(float(spread) ** 2 + self.floor ** 2)

    @classmethod
    def parse(cls, raw: Any, where: str, source: str) -> QualityInterval:
        fields = _Fields(raw, where, source)
        fields.exactly('method', 'member-flip-spread', 'the one interval implemented')
        out = cls(scale=fields.number('scale', 0, 1000), floor=fields.number('floor', 0, 10),
                  level=fields.number('level', 0.01, 0.999))
        fields.done()
        return out

    def to_json(self) -> dict[str, Any]:
        return {'method': self.method, 'scale': self.scale, 'floor': self.floor,
                'level': self.level}


@dataclass(frozen=True)
class Calibration:
    """Maps fitted on volumes other than the reported held-out ones: each trained
    indicator's probability recalibrated, and the quality's interval.

    Args:
        indicators: the map of each recalibrated indicator (only trained ones; the others
            are reported as the network gives them).
        quality_interval: how the quality interval is made, or None (no interval).
        fitted_on: one line on the volumes the maps were fitted on.
    """

    indicators: Mapping[str, IndicatorCalibration] = field(default_factory=dict)
    quality_interval: QualityInterval | None = None
    fitted_on: str = 'not recorded'

    def probability(self, key: str, probability: float) -> float:
        """The calibrated probability of indicator ``key`` (unchanged when it has no map)."""
        found = self.indicators.get(key)
        return probability if found is None else found.apply(probability)

    @classmethod
    def parse(cls, raw: Any, source: str, trained: Sequence[str] = OUTPUT_NAMES
              ) -> Calibration | None:
        if raw is None:
            return None
        where = 'postprocessing.calibration'
        fields = _Fields(raw, where, source)
        fitted_on = fields.text('fitted_on')
        per = _Fields(fields.take('indicators'), f'{where}.indicators', source)
        indicators = {}
        for key in list(per.raw):
            if key not in ARTIFACT_KEYS or key not in trained:
                raise per.error(f'{where}.indicators names {_show(key)}, not a trained '
                                f'indicator (trained: {", ".join(trained)})')
            indicators[key] = IndicatorCalibration.parse(per.take(key),
                                                         f'{where}.indicators.{key}', source)
        per.done()
        interval = fields.take('quality_interval', None)
        interval = (None if interval is None else
                    QualityInterval.parse(interval, f'{where}.quality_interval', source))
        fields.done()
        ordered = {key: indicators[key] for key in ARTIFACT_KEYS if key in indicators}
        return cls(ordered, interval, fitted_on)

    def to_json(self) -> dict[str, Any]:
        return {'fitted_on': self.fitted_on,
                'indicators': {key: c.to_json() for key, c in self.indicators.items()},
                'quality_interval': (self.quality_interval.to_json()
                                     if self.quality_interval else None)}


@dataclass(frozen=True)
class Postprocessing:
    """What is made of the blended outputs beyond quality and probabilities.

    Args:
        penalty_families: the simulated artifact families whose quality points the network's
            outputs after the 11 estimate, in output order (reported as ``penalties``).
        calibration: the recalibration of the trained indicators and the quality interval,
            or None (probabilities as the network and fusion give them, no interval).
    """

    penalty_families: tuple[str, ...] = ()
    calibration: Calibration | None = None

    @classmethod
    def parse(cls, raw: Any, source: str, trained: Sequence[str] = OUTPUT_NAMES
              ) -> Postprocessing:
        fields = _Fields(raw, 'postprocessing', source)
        families = fields.names('penalty_families')
        bad = next((f for f in families if not re.fullmatch(r'[a-z][a-z0-9_]*', f)), None)
        if bad is not None:
            raise fields.error(f'postprocessing.penalty_families must hold lower-case family '
                               f'names, got {_show(bad)}')
        calibration = Calibration.parse(fields.take('calibration', None), source, trained)
        fields.done()
        return cls(families, calibration)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {'penalty_families': list(self.penalty_families)}
        if self.calibration is not None:  # absent, not null: older files stay as they were
            out['calibration'] = self.calibration.to_json()
        return out


@dataclass(frozen=True)
class ModelSpec:
    """A model folder's ``model.json`` (format :data:`FORMAT_VERSION`).

    Args:
        name: the model's name (its folder's name when installed).
        version: its version, e.g. "0.6.0".
        description: one line on what it is.
        created: when it was made (ISO 8601).
        domain: where it applies.
        outputs: which outputs were trained.
        network: the network of ``weights.pt``.
        tiles: how inputs are made.
        view: the whole-volume view and its shares.
        members: weight files of the same network trained with other seeds, whose view
            outputs are averaged with the main network's.
        fusion: the fused indicator, or None.
        postprocessing: the penalty families.
        evaluation: the held-out figures of the model card (read by people, not the worker).
    """

    name: str
    version: str
    description: str
    created: str
    domain: Domain = field(default_factory=Domain)
    outputs: Outputs = field(default_factory=Outputs)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    tiles: TileSpec = field(default_factory=TileSpec)
    view: ViewSpec = field(default_factory=ViewSpec)
    members: tuple[str, ...] = ()
    fusion: FusionSpec | None = None
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    evaluation: Mapping[str, Any] | None = None
    format_version: str = FORMAT_VERSION

    @property
    def output_count(self) -> int:
        """How many outputs the network has: the 11, then one per penalty family."""
        return len(OUTPUT_NAMES) + len(self.postprocessing.penalty_families)

    @classmethod
    def from_dict(cls, raw: Any, source: str = SPEC_FILE) -> ModelSpec:
        """The validated spec of a parsed ``model.json``; ModelSpecError naming the field."""
        fields = _Fields(raw, '', source)
        version = fields.raw.get('format_version')
        if version is None or version == 'miqa-model/1':
            raise fields.error(
                f'no format_version {FORMAT_VERSION!r}: an older model.json; convert it with '
                '`python -m miqa_worker.model_spec upgrade MODEL_DIR`'
                if version is None else
                'format miqa-model/1 is an older model.json; convert it with '
                '`python -m miqa_worker.model_spec upgrade MODEL_DIR`')
        if version != FORMAT_VERSION:
            raise fields.error(f'unknown format_version {_show(version)} (this worker reads '
                               f'{FORMAT_VERSION!r})')
        fields.take('format_version')
        created = fields.text('created')
        try:
            datetime.datetime.fromisoformat(created)
        except ValueError:
            raise fields.error(f'created must be an ISO 8601 time, got {_show(created)}') from None
        members = fields.names('members', file_names=True)
        if WEIGHTS_FILE in members:
            raise fields.error(f'members must not name {WEIGHTS_FILE} (the main network)')
        evaluation = fields.take('evaluation', None)
        if evaluation is not None and not isinstance(evaluation, Mapping):
            raise fields.error(f'evaluation must be a JSON object, got {_show(evaluation)}')
        spec = cls(
            name=fields.text('name'), version=fields.text('version'),
            description=fields.text('description'), created=created,
            domain=Domain.parse(fields.take('domain'), source),
            outputs=Outputs.parse(fields.take('outputs'), source),
            network=NetworkSpec.parse(fields.take('network'), source),
            tiles=TileSpec.parse(fields.take('tiles'), source),
            view=ViewSpec.parse(fields.take('view'), source),
            members=members,
            fusion=FusionSpec.parse(fields.take('fusion'), source),
            postprocessing=Postprocessing.parse(fields.take('postprocessing'), source,
                                                _trained_names(fields.raw.get('outputs'))),
            evaluation=evaluation)
        fields.done()
        return spec

    def to_json(self) -> dict[str, Any]:
        """The JSON form, as :func:`save_spec` writes it (``from_dict`` reads it back)."""
        out = {'format_version': self.format_version, 'name': self.name,
               'version': self.version, 'description': self.description,
               'created': self.created, 'domain': self.domain.to_json(),
               'outputs': self.outputs.to_json(), 'network': self.network.to_json(),
               'tiles': self.tiles.to_json(), 'view': self.view.to_json(),
               'members': list(self.members),
               'fusion': self.fusion.to_json() if self.fusion else None,
               'postprocessing': self.postprocessing.to_json()}
        if self.evaluation is not None:
            out['evaluation'] = self.evaluation
        return out

    def checked(self) -> ModelSpec:
        """This spec after a round trip through its JSON form: what :func:`load_spec` would
        accept (a spec built in Python is validated the same way as a file)."""
        return ModelSpec.from_dict(json.loads(json.dumps(self.to_json(), allow_nan=False)))


def _trained_names(outputs: Any) -> tuple[str, ...]:
    """The trained outputs of a raw ``outputs`` object (all when it cannot tell: the
    ``outputs`` parser reports what is wrong with it)."""
    trained = outputs.get('trained') if isinstance(outputs, Mapping) else None
    if isinstance(trained, list) and all(isinstance(t, str) for t in trained):
        return tuple(trained)
    return OUTPUT_NAMES


def spec_path(path: str | os.PathLike) -> Path:
    """``model.json`` of a model folder, or the file itself."""
    path = Path(path)
    return path / SPEC_FILE if path.is_dir() else path


def load_spec(path: str | os.PathLike) -> ModelSpec:
    """Read and validate a ``model.json`` (or the one in a model folder)."""
    file = spec_path(path)
    try:
        raw = json.loads(file.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ModelSpecError(f'{SPEC_FILE}: missing in {file.parent} (every model folder '
                             'needs one; see miqa_worker.model_spec)') from None
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f'{SPEC_FILE}: unreadable: {" ".join(str(exc).split())}') from None
    return ModelSpec.from_dict(raw)


def save_spec(spec: ModelSpec, path: str | os.PathLike) -> Path:
    """Validate and write a spec as ``model.json`` (path: the file, or a model folder)."""
    checked = spec.checked()
    file = spec_path(path)
    file.write_text(json.dumps(checked.to_json(), indent=1, allow_nan=False) + '\n',
                    encoding='utf-8')
    return file


#: The keys of the older, unversioned model.json and where upgrade_v1 puts each.
V1_KEYS = ('name', 'version', 'created', 'description', 'network', 'channels', 'trained_on',
           'test_subjects', 'global_view_weight', 'view_weights', 'view_flips',
           'penalty_families', 'view_members', 'held_out')


def _trained_outputs(held_out: Any) -> tuple[str, ...]:
    """Quality and the indicators the held-out test could score (null AUC: never trained)."""
    auc = held_out.get('indicator_auc') if isinstance(held_out, Mapping) else None
    if not isinstance(auc, Mapping):
        return OUTPUT_NAMES
    return ('quality', *(key for key in ARTIFACT_KEYS if auc.get(key) is not None))


def upgrade_v1(old: Mapping[str, Any], fusion_indicator: str | None = None,
               domain: Domain | None = None) -> ModelSpec:
    """The spec of an older ``model.json`` (validated; ModelSpecError naming a bad field).

    Args:
        old: the older file's JSON object.
        fusion_indicator: the indicator of the folder's ``fusion.json`` (the older format
            used it whenever the file was there), or None without one.
        domain: the model's domain (the older format had none: default, MIQA's generator).
    """
    source = f'{SPEC_FILE} (older format)'
    if not isinstance(old, Mapping):
        raise ModelSpecError(f'{source}: must be a JSON object')
    unknown = sorted(set(old) - set(V1_KEYS))
    if unknown:
        raise ModelSpecError(f'{source}: unknown field {unknown[0]}')
    evaluation = {key: old[key] for key in ('trained_on', 'test_subjects', 'held_out')
                  if key in old}
    channels = old.get('channels')
    spec = {
        'format_version': FORMAT_VERSION,
        'name': old.get('name'), 'version': old.get('version', 'unversioned'),
        'description': old.get('description') or f'{old.get("name")} (no description)',
        'created': old.get('created') or datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'),
        'domain': (domain or Domain()).to_json(),
        'outputs': Outputs(_trained_outputs(old.get('held_out'))).to_json(),
        'network': {'builder': old.get('network', BUILDER), 'weights': WEIGHTS_FILE,
                    'channels': list(NETWORK_CHANNELS) if channels is None else channels},
        'tiles': TileSpec().to_json(),
        'view': {'weight': old.get('global_view_weight') or 0.0,
                 'weights': old.get('view_weights') or {}, 'flips': old.get('view_flips', 1)},
        'members': old.get('view_members') or [],
        'fusion': FusionSpec(fusion_indicator).to_json() if fusion_indicator else None,
        'postprocessing': {'penalty_families': old.get('penalty_families') or []},
        **({'evaluation': evaluation} if evaluation else {}),
    }
    return ModelSpec.from_dict(spec, source)


def upgrade_folder(model_dir: str | os.PathLike) -> ModelSpec:
    """Rewrite an older ``model.json`` in a model folder in this format; returns the spec."""
    folder = Path(model_dir)
    old = json.loads((folder / SPEC_FILE).read_text(encoding='utf-8'))
    indicator = None
    if (folder / FUSION_FILE).is_file():
        indicator = json.loads((folder / FUSION_FILE).read_text(encoding='utf-8')).get(
            'indicator')
    spec = upgrade_v1(old, indicator)
    save_spec(spec, folder)
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m miqa_worker.model_spec upgrade DIR...|check DIR...``: convert or check."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in ('upgrade', 'check'):
        print('usage: python -m miqa_worker.model_spec upgrade|check MODEL_DIR...',
              file=sys.stderr)
        return 2
    failed = 0
    for folder in args[1:]:
        try:
            spec = upgrade_folder(folder) if args[0] == 'upgrade' else load_spec(folder)
            print(f'{folder}: {spec.name} {spec.version} ({spec.format_version})')
        except (OSError, ValueError) as exc:
            print(f'{folder}: {" ".join(str(exc).split())}', file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
