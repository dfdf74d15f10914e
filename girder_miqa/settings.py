"""The plugin's Girder settings: their defaults, validators and typed readers.

Girder calls a validator on every ``PUT /system/setting`` (and ``Setting().set``); a bad value
is refused with a ``ValidationException`` (HTTP 400) naming the setting and the allowed range.
A validator also normalizes the value it stores (numbers as floats, names stripped). The readers
below are what the rest of the server calls; a change takes effect on the next request.
``GIRDER_SETTING_MIQA_LOCK_SECONDS`` (and so on) override them, as for any Girder setting; the
readers validate an override too (Girder does not) and fall back to the default when it is bad.
"""

import logging
import math
import re

from girder.exceptions import ValidationException
from girder.models.setting import Setting
from girder.utility import setting_utilities

from .constants import PluginSettings

LOCK_SECONDS_RANGE = (1.0, 86400.0)
VISIBILITY_CACHE_SECONDS_RANGE = (0.0, 3600.0)
QUALITY_RANGE = (0.0, 10.0)  # the model's quality scale
PROBABILITY_RANGE = (0.0, 1.0)
# The workers never read more than 1024^3 voxels (miqa_worker.image_io.HARD_MAX_VOXELS); 4096 is
# the smallest volume a model's fusion statistics accept.
MAX_VOXELS_RANGE = (4096, 1024 ** 3)
MODEL_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$')  # as miqa_worker.model_store
logger = logging.getLogger(__name__)


def _number(doc: dict, low: float, high: float, unit: str) -> float:
    """The setting's value as a float within [low, high]; ValidationException otherwise."""
    value = doc['value']
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or not low <= value <= high:
        raise ValidationException(
            f'{doc["key"]} must be a number from {low:g} to {high:g} {unit}, not '
            f'{doc["value"]!r}.', 'value')
    return float(value)


@setting_utilities.default(PluginSettings.LOCK_SECONDS)
def _default_lock_seconds() -> float:
    return 300.0


@setting_utilities.validator(PluginSettings.LOCK_SECONDS)
def _validate_lock_seconds(doc: dict) -> None:
    """How long a review lock lasts unless renewed."""
    doc['value'] = _number(doc, *LOCK_SECONDS_RANGE, 'seconds')


@setting_utilities.default(PluginSettings.VISIBILITY_CACHE_SECONDS)
def _default_visibility_cache_seconds() -> float:
    return 30.0


@setting_utilities.validator(PluginSettings.VISIBILITY_CACHE_SECONDS)
def _validate_visibility_cache_seconds(doc: dict) -> None:
    """How long the queue may reuse a user's set of unreadable folders (0: never)."""
    doc['value'] = _number(doc, *VISIBILITY_CACHE_SECONDS_RANGE, 'seconds')


@setting_utilities.default(PluginSettings.SUSPICION_THRESHOLDS)
def _default_suspicion_thresholds() -> dict:
    return {'quality': 5.0, 'probability': 0.5}


@setting_utilities.validator(PluginSettings.SUSPICION_THRESHOLDS)
def _validate_suspicion_thresholds(doc: dict) -> None:
    """The model calls a scan suspicious below ``quality`` or above ``probability`` (of any
    trained indicator: untrained outputs never count; the probability is also the threshold of
    the review page's suggestions): an object with both."""
    value = doc['value']
    key = doc['key']
    if not isinstance(value, dict) or set(value) != {'quality', 'probability'}:
        raise ValidationException(
            f'{key} must be an object {{"quality": {QUALITY_RANGE[0]:g}-{QUALITY_RANGE[1]:g}, '
            f'"probability": {PROBABILITY_RANGE[0]:g}-{PROBABILITY_RANGE[1]:g}}}, not '
            f'{value!r}.', 'value')
    doc['value'] = {
        'quality': _number({'key': f'{key}.quality', 'value': value['quality']},
                           *QUALITY_RANGE, '(quality)'),
        'probability': _number({'key': f'{key}.probability', 'value': value['probability']},
                               *PROBABILITY_RANGE, '(probability)'),
    }


@setting_utilities.default(PluginSettings.MAX_VOXELS)
def _default_max_voxels() -> int:
    return MAX_VOXELS_RANGE[1]


@setting_utilities.validator(PluginSettings.MAX_VOXELS)
def _validate_max_voxels(doc: dict) -> None:
    """The most voxels a worker reads of one image (it refuses larger ones)."""
    value = doc['value']
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    low, high = MAX_VOXELS_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationException(
            f'{doc["key"]} must be a whole number from {low} to {high} (1024^3) voxels, not '
            f'{doc["value"]!r}.', 'value')
    doc['value'] = value


@setting_utilities.default(PluginSettings.DEFAULT_MODEL)
def _default_default_model() -> str:
    return ''


@setting_utilities.validator(PluginSettings.DEFAULT_MODEL)
def _validate_default_model(doc: dict) -> None:
    """The model new projects use: a model's plain name, or '' for the workers' default."""
    value = doc['value']
    if value is None:
        value = ''
    if not isinstance(value, str) or (value.strip() and not MODEL_NAME_RE.match(value.strip())):
        raise ValidationException(
            f'{doc["key"]} must be empty (the workers\' default) or a model name of 1 to 100 '
            'letters, digits, ".", "_" or "-" (starting with a letter or digit), not '
            f'{value!r}.', 'value')
    doc['value'] = value.strip()


def _read(key: str):
    """A setting's value, validated: a ``GIRDER_SETTING_*`` environment override is never
    checked by Girder, so a bad one is logged and the default used instead."""
    doc = {'key': key, 'value': Setting().get(key)}
    try:
        setting_utilities.getValidator(key)(doc)
    except ValidationException as exc:
        logger.warning('Ignoring the value of %s: %s', key, exc)
        return setting_utilities.getDefaultFunction(key)()
    return doc['value']


def lock_seconds() -> float:
    """How long a review lock lasts unless renewed (``miqa.lock_seconds``)."""
    return _read(PluginSettings.LOCK_SECONDS)


def visibility_cache_seconds() -> float:
    """How long the queue may reuse a user's unreadable folders
    (``miqa.visibility_cache_seconds``)."""
    return _read(PluginSettings.VISIBILITY_CACHE_SECONDS)


def suspicion_thresholds() -> tuple[float, float]:
    """(quality, probability): the model calls a scan suspicious below the quality or above the
    probability of any trained indicator (``miqa.suspicion_thresholds``); suggestions start at
    the probability."""
    value = _read(PluginSettings.SUSPICION_THRESHOLDS)
    return value['quality'], value['probability']


def max_voxels() -> int:
    """The most voxels a worker reads of one image (``miqa.max_voxels``)."""
    return _read(PluginSettings.MAX_VOXELS)


def default_model() -> str:
    """The model new projects use; '' means the workers' default (``miqa.default_model``)."""
    return _read(PluginSettings.DEFAULT_MODEL)


SETTINGS = (PluginSettings.LOCK_SECONDS, PluginSettings.SUSPICION_THRESHOLDS,
            PluginSettings.VISIBILITY_CACHE_SECONDS, PluginSettings.MAX_VOXELS,
            PluginSettings.DEFAULT_MODEL)
