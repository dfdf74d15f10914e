"""The typed settings of a training run: one network (:class:`TrainConfig`), one generated
cache (:class:`GenerateStep`) and the whole run (:class:`RunConfig`, loaded from a recipe by
``recipe.load_recipe``). No torch here: a plan is printed without the training stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..constants import NETWORK_CHANNELS
from .manifest import DEFAULT_MANIFEST

#: Every simulated artifact family, by name (``artifacts.FAMILIES`` holds what each does).
FAMILIES: tuple[str, ...] = ('ghosting', 'motion', 'bias', 'spike', 'noise', 'wraparound',
                             'coverage')
#: Probability and severity range of each artifact unless a recipe says otherwise.
DEFAULT_PROBABILITY = 0.2
DEFAULT_SEVERITY = (0.25, 1.0)
#: ``miqa-train run --fine-tune-from`` learning rate unless given: a tenth of the shipped one.
FINE_TUNE_LEARNING_RATE = 2e-4


@dataclass
class TrainConfig:
    """Every setting that changes the trained weights; the defaults are the shipped recipe's
    (``miqa_worker/models/miqa-default/recipe.json``, ``train``)."""

    epochs: int = 12
    tiles_per_volume: int = 4
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    lr_decay: float = 0.94  # ExponentialLR gamma, per epoch
    focal_gamma: float = 2.0
    quality_weight: float = 1.0
    indicator_weight: float = 5.0
    eval_tiles: int = 12  # grid tiles per volume for the per-epoch validation (all at the end)
    seed: int = 0
    # Share of the whole-volume view in a scan's result (the tiles' mean has the rest); the
    # view is trained alongside the tiles when > 0.
    global_view_weight: float = 0.5
    views_per_volume: int = 2  # whole-volume views per volume per epoch (they carry exact labels)
    augment: bool = True  # random flips and axis orders of every training tile
    channels: tuple[int, ...] = tuple(NETWORK_CHANNELS)  # widths of the network's five stages
    # More outputs after the 11: the quality points each simulated family costs (penalty x
    # severity, known for generated volumes), a richer target than their sum alone.
    penalty_outputs: bool = True
    # A model (name or folder) whose networks start the training instead of random weights:
    # member m starts from that model's m-th network (a warm start; '' trains from scratch).
    init_from: str = ''
    # Train only on the volumes generated without these implementations (a cache's
    # ``held_out`` column, e.g. 'monai+segment'): a leave-one-simulator-out network.
    # '' uses every volume.
    variant_group: str = ''


@dataclass(frozen=True)
class GenerateStep:
    """One ``miqa-train generate``: a cache folder and the generator settings that fill it."""

    name: str
    cache: Path
    seed: int
    anatomies: int = 30
    variants: int = 4
    probability: float = DEFAULT_PROBABILITY
    severity: tuple[float, float] = DEFAULT_SEVERITY
    families: tuple[str, ...] = FAMILIES
    spacing: tuple[float, float] = (1.0, 2.0)
    workers: int = 1
    templates_only_subjects: int = 10  # nominal subjects when there are no real scans
    # Leave-one-simulator-out groups: variant v of each anatomy is corrupted by
    # ``simulators.mixed_pipeline(hold_out=simulators[v % len])``, every implementation but
    # that group's. Empty: the project's own generator only (``artifacts.py``).
    simulators: tuple[tuple[str, ...], ...] = ()
    post_processing: float = 0.0  # probability of ``simulators.RandomPostProcessing``
    # Anatomies painted by ``simulators.SyntheticHead`` (subject ``synthetic``).
    synthetic_heads: int = 0


@dataclass(frozen=True)
class RunConfig:
    """Everything ``miqa-train run`` does, typed: data, training, evaluation, fusion, shipping."""

    cache: Path
    out: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    folds: int = 5
    final_epochs: int = 40
    final_members: int = 2
    final_threads: int | None = None
    view_flips: int = 4
    grid_tiles: int = 27
    test_subjects: tuple[str, ...] = ()
    baseline: bool = True
    real_scans: bool = True
    fusion: bool = True
    fusion_caches: tuple[Path, ...] = ()
    shared_dir: Path | None = None
    manifest: Path = DEFAULT_MANIFEST
    threads: int | None = None
    device: str | None = None
    resume: bool = False
    progress: bool = True
    generate: tuple[GenerateStep, ...] = ()
    name: str = 'miqa-default'
    version: str = '0.1.0'
    description: str = 'MIQA quality network trained on simulated artifacts; see MODEL_CARD.md'
    ship_to: Path | None = None
    command: str | None = None
    recipe: Path | None = None  # the recipe file this run came from
    # A model (name or folder) to fine-tune on an ingested project instead of training from
    # scratch: ``finetune.run_fine_tune`` (train.epochs epochs, agreement with tier 2).
    fine_tune_from: str | None = None
    # After shipping, ``miqa-train calibrate --fit``: the recalibration and the quality
    # interval fitted on this cache's development people (None: no calibration stage),
    # measured on the held-out people of ``calibrate_cache`` (default ``cache``).
    calibrate_fit_cache: Path | None = None
    calibrate_cache: Path | None = None
    calibrate_level: float = 0.8


