"""The report folder: metrics.json, PNG plots and MODEL_CARD.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..constants import ARTIFACT_KEYS
from ..network import network_channels
from .artifacts import FAMILIES
from .dataset import VolumeSet
from .evaluate import BIN_NAMES, roc_points
from .fusion import DEVELOPMENT_SOURCE

AUC_BAR, R2_BAR = 0.90, 0.70
PLOTS = ('quality_scatter.png', 'confusion.png', 'roc.png', 'training_curves.png')


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if k not in ('history', 'val_predictions', 'val_parts')}


def held_out_summary(results: dict) -> dict:
    """Headline held-out (test-subject) numbers and whether they meet the bar."""
    test = results.get('final', {}).get('test')
    if not test:
        return {}
    fam = {k: v.get('auc') for k, v in test.get('family_auc', {}).items()}
    checks = [test.get('r2') is not None and test['r2'] >= R2_BAR]
    checks += [v is not None and v >= AUC_BAR for v in fam.values()]
    return {'subjects': results.get('test_subjects'), 'volumes': test.get('volumes'),
            'r2': test.get('r2'), 'mae': test.get('mae'), 'family_auc': fam,
            'indicator_auc': test.get('indicator_auc'),
            'bar': {'r2': R2_BAR, 'auc': AUC_BAR}, 'bar_met': bool(all(checks))}


def build_metrics(results: dict) -> dict:
    """The JSON of every metric (predictions and per-epoch histories kept short)."""
    out = {k: results[k] for k in ('created', 'cache', 'config', 'n_folds', 'final_epochs',
                                   'device',
                                   'test_subjects', 'development_subjects', 'volumes',
                                   'seconds', 'command', 'generator', 'view_weights',
                                   'view_flips', 'penalty_families', 'view_members', 'recipe')
           if k in results}
    out['held_out_summary'] = held_out_summary(results)
    out['cross_validation'] = results.get('cross_validation')
    out['folds'] = [{**_strip(f), 'history': f.get('history')} for f in results.get('folds', [])]
    final = results.get('final', {})
    out['final'] = {'train': final.get('train'), 'test': final.get('test'),
                    'history': final.get('history')}
    if final.get('test_network_only'):
        out['final']['test_network_only'] = final['test_network_only']
    if results.get('fusion'):
        out['fusion'] = results['fusion']
    if 'baseline' in results:
        out['baseline'] = results['baseline']
    if results.get('real_scans'):
        out['real_scans'] = results['real_scans']
    return out


def _plots(results: dict, data: VolumeSet, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    # Predicted vs true quality: cross-validation (pooled over folds) and held-out test.
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, preds, color in _prediction_sets(results):
        idx = np.asarray(preds['index'], dtype=int)
        ax.scatter(data.quality[idx], preds['quality'], s=8, alpha=0.6, c=color, label=name)
    ax.plot([0, 10], [0, 10], 'k--', lw=1)
    ax.set(xlabel='true quality', ylabel='predicted quality', xlim=(-0.5, 10.5),
           ylim=(-1, 11), title='Overall quality')
    ax.legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / 'quality_scatter.png', dpi=80)
    plt.close(fig)

    # Confusion matrix of quality bins (test, else pooled validation).
    sets = _prediction_sets(results)
    name, preds, _ = sets[-1] if sets else ('none', None, None)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    source = results.get('final', {}).get('test') if name.startswith('held') else None
    matrix = np.array(source['confusion']) if source and 'confusion' in source else None
    if matrix is None and preds is not None:
        from .evaluate import quality_bins

        idx = np.asarray(preds['index'], dtype=int)
        matrix = np.zeros((3, 3), dtype=int)
        for t, p in zip(quality_bins(data.quality[idx]),
                        quality_bins(np.asarray(preds['quality'])), strict=True):
            matrix[t, p] += 1
    if matrix is not None:
        ax.imshow(matrix, cmap='Blues')
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha='center', va='center')
    ax.set(xticks=range(3), yticks=range(3), xticklabels=BIN_NAMES, yticklabels=BIN_NAMES,
           xlabel='predicted', ylabel='true', title=f'Quality bins ({name})')
    plt.setp(ax.get_xticklabels(), rotation=20, fontsize=7)
    plt.setp(ax.get_yticklabels(), fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / 'confusion.png', dpi=80)
    plt.close(fig)

    # ROC curves per indicator with both classes (same set as above).
    fig, ax = plt.subplots(figsize=(5, 5))
    if preds is not None:
        idx = np.asarray(preds['index'], dtype=int)
        logits = np.asarray(preds['logits'])
        for k, key in enumerate(ARTIFACT_KEYS):
            points = roc_points(data.indicators[idx, k], logits[:, k])
            if points is not None:
                ax.plot(*points, label=key)
    ax.plot([0, 1], [0, 1], 'k--', lw=1)
    ax.set(xlabel='false positive rate', ylabel='true positive rate',
           title=f'Indicator ROC ({name})')
    ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(out_dir / 'roc.png', dpi=80)
    plt.close(fig)

    # Training curves: loss per epoch of every fold and the final model; validation R².
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    runs = [(f'fold {f["fold"]}', f.get('history') or []) for f in results.get('folds', [])]
    runs.append(('final', results.get('final', {}).get('history') or []))
    for label, history in runs:
        if not history:
            continue
        epochs = [h['epoch'] for h in history]
        axes[0].plot(epochs, [h['train_loss'] for h in history], label=label)
        if any(h.get('val_r2') is not None for h in history):
            axes[1].plot(epochs, [h.get('val_r2') for h in history], label=label)
    axes[0].set(xlabel='epoch', ylabel='training loss', title='Training loss')
    axes[1].set(xlabel='epoch', ylabel='validation R²', title='Validation R² (folds)')
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / 'training_curves.png', dpi=80)
    plt.close(fig)


def _prediction_sets(results: dict) -> list[tuple[str, dict, str]]:
    sets = []
    pooled = {'index': [], 'quality': [], 'logits': []}
    for fold in results.get('folds', []):
        p = fold.get('val_predictions')
        if p:
            for k in pooled:
                pooled[k].extend(p[k])
    if pooled['index']:
        sets.append(('cross-validation', pooled, 'tab:blue'))
    if results.get('predictions', {}).get('test'):
        sets.append(('held-out test', results['predictions']['test'], 'tab:red'))
    return sets


def _fmt(value: float | None, digits: int = 3) -> str:
    return '–' if value is None else f'{value:.{digits}f}'


def _fit_note(metrics: dict, key: str) -> str:
    """How well the final network fits its training volumes against the held-out ones."""
    final = metrics.get('final') or {}
    train, plain = final.get('train') or {}, final.get('test_network_only') or {}
    if train.get('r2') is None or plain.get('r2') is None:
        return ''
    a = (train.get('indicator_auc') or {}).get(key)
    b = (plain.get('indicator_auc') or {}).get(key)
    return (f' Inputs from training volumes are sound only if the network does not fit them '
            f'much better than unseen ones: on {train.get("volumes")} of them it scores '
            f'quality R² {_fmt(train["r2"])} and `{key}` AUC {_fmt(a)}, on the held-out '
            f'subjects {_fmt(plain["r2"])} and {_fmt(b)}.')


def _below(value: float | None, bar: float) -> str:
    """A value under the bar, with the digits that show it is under (0.8997, not 0.900)."""
    if value is None:
        return 'n/a'
    return f'{value:.4f}' if round(value, 3) >= bar else _fmt(value)


def _generate_command(cache: str, gen: dict) -> str:
    """The ``miqa-train generate`` line that makes a cache with these settings."""
    omitted = [name for name in FAMILIES if name not in gen.get('families', FAMILIES)]
    return (f'miqa-train generate --cache-dir {cache} --anatomies '
            f'{gen["anatomies_per_subject"]} --variants {gen["variants"]} '
            f'--seed {gen["seed"]} --probability {gen["probability"]}'
            + (f' --families {",".join(gen["families"])}' if omitted else '')
            + (' --templates-only' if gen.get('templates_only') else ''))


def _fusion_data(fusion: dict) -> str:
    """What the trees were fitted on, in a sentence or two."""
    sources = fusion.get('sources') or {}
    fresh = {name: n for name, n in sources.items() if name != DEVELOPMENT_SOURCE}
    own = sources.get(DEVELOPMENT_SOURCE, fusion.get('volumes'))
    text = (f'They were fitted on the {own} labelled development volumes, with the final '
            'network\'s own outputs on them as input')
    if fresh:
        text += (f', and on {sum(fresh.values())} fresh volumes of every person but the '
                 f'held-out ones from {len(fresh)} more cache(s) (`--fusion-cache`, e.g. '
                 'another generator seed), which the network '
                 'never trained on, so its outputs there are those it gives a new scan')
    return text + '; the held-out subjects were not used.'


def _fusion_section(metrics: dict) -> list[str]:
    """The model card's account of the fused indicator (empty when there is none)."""
    fusion = metrics.get('fusion') or {}
    plain = (metrics.get('final') or {}).get('test_network_only')
    test = (metrics.get('final') or {}).get('test')
    if not fusion or fusion.get('skipped') or not plain or not test:
        return []
    key = fusion['indicator']
    oof = fusion.get('out_of_fold_auc') or {}
    lines = ['## Fused indicator', '',
             f'`{key}` is not the network\'s alone. Noise and motion both raise the air around '
             'the head, and a 64³ tile cannot tell evenly spread noise from faint copies of '
             'the head\'s edges; statistics of the whole air can. Boosted trees '
             f'({fusion.get("method")}) take the network\'s logit and '
             f'{len(fusion.get("inputs", [])) - 1} background metrics '
             '(`quality_metrics.background_metrics`: MRIQC\'s air summary and QI1, plus '
             'measures of structure in the air) of the volume subsampled as the worker does, '
             f'and decide `{key}`. ' + _fusion_data(fusion) + ' Shipped as `fusion.json` '
             '(plain arrays, no pickle).' + _fit_note(metrics, key), '',
             f'Out of subject folds on the volumes they learn from, `{key}` ROC AUC: network '
             f'{_fmt(oof.get("network"))}, fused {_fmt(oof.get("fused"))}'
             + ''.join(f'; {name}: network {_fmt(entry.get("network"))}, fused '
                       f'{_fmt(entry.get("fused"))}'
                       for name, entry in (fusion.get('out_of_fold_auc_by_source')
                                           or {}).items()) + '.', '',
             '| held-out family | network alone | fused |', '|---|---|---|']
    for family, entry in (test.get('family_auc') or {}).items():
        before = ((plain.get('family_auc') or {}).get(family) or {}).get('auc')
        if entry and entry.get('score', '').endswith(key):
            lines.append(f'| {family} | {_fmt(before)} | {_fmt(entry.get("auc"))} |')
    return lines + ['']


def _families(metrics: dict) -> list:
    """The simulated families of the run's generator (every family without one)."""
    gen = metrics.get('generator') or {}
    return [FAMILIES[name] for name in gen.get('families', FAMILIES) if name in FAMILIES]


def _untrained(metrics: dict) -> list[str]:
    """The indicators no simulated family sets: never trained."""
    return [key for key in ARTIFACT_KEYS
            if key not in {f.indicator for f in _families(metrics)}]


def _what_it_is(metrics: dict) -> list[str]:
    """The network, its tiles, the whole-volume view and its blend."""
    cfg = metrics.get('config', {})
    gw = float(cfg.get('global_view_weight') or 0.0)
    return [
        '## What it is',
        '',
        'A MONAI `Classifier` (`miqa_worker.network.build_network`: five strided stages of '
        f'{", ".join(str(c) for c in network_channels(cfg.get("channels")))} channels and one '
        'fully connected layer) on one-channel 64³ tiles of '
        'the percentile-rescaled volume (`preprocessing.rescale_intensity`). Output 0 is overall '
        'quality (0–10), outputs 1–10 are the logits of the ten indicators '
        '(`constants.ARTIFACT_KEYS`). A scan\'s result is the mean over its tiles'
        + (', blended with the same network\'s output on the whole volume '
           'seen as one more 64³ tile (`tiling.global_view`: isotropic voxels, the longest '
           'side fitted). Tiles see fine texture (noise, spikes, ghosts); the whole view sees '
           'what spans the head (a bias field, a cut field of view, wraparound).'
           + (f' The view is run as {int(metrics["view_flips"])} mirror images (flipped along '
              'each combination of axes, `assessment.FLIPS`) and their outputs averaged, in '
              'every evaluation here as in the worker (`model.json` `view_flips`).'
              if int(metrics.get('view_flips') or 1) > 1 else '')
           + (f' The view\'s outputs are also averaged with those of '
              f'{len(metrics["view_members"])} more network(s) of the same recipe trained with '
              'the next seeds (`model.json` `view_members`, the same number of mirror images '
              'each): a seed ensemble of the view at the cost of its mirror images.'
              if metrics.get('view_members') else '')
           if gw else '.')
        + ((' The view\'s share is chosen per output by cross-validation (see "Blend of '
            'tiles and whole-volume view" below).'
            if (metrics.get('view_weights') or {}).get('weights') else
            f' The view\'s share in every output is {gw:g}.') if gw else '')
        + (f' The `{metrics["fusion"]["indicator"]}` probability is then decided together with '
           'background metrics by boosted trees (`fusion.json`, see "Fused indicator" below).'
           if (metrics.get('fusion') or {}).get('out_of_fold_auc') is not None
           and (metrics.get('final') or {}).get('test_network_only') else ''),
        '',
    ]


def _simulated_section(metrics: dict) -> list[str]:
    """How the labels were simulated: the families and their penalties."""
    gen = metrics.get('generator') or {}
    families = _families(metrics)
    omitted = [name for name in FAMILIES if name not in {f.name for f in families}]
    untrained = _untrained(metrics)
    return [
        '## Trained on simulated artifacts',
        '',
        '**All labels are simulated.** Training volumes are generated from a few real scans '
        '(../shared/data/mri, see SOURCES.md there) and the MNI152 template with random '
        'resolution, slice thickness, tilt, elastic deformation, contrast and field of view; '
        'then artifacts are simulated with known severity: '
        + ', '.join(f'{f.name} (→ `{f.indicator}`)' if f.indicator else
                    f'{f.name} (no indicator; lowers quality only)' for f in families)
        + '. Quality = 10 minus a penalty per artifact proportional to its severity (see '
        '`miqa_worker/training/artifacts.py`).'
        + (' Not simulated for this model: ' + ', '.join(omitted) + ' (its indicator was '
           'never trained; see Limits).' if omitted else ''),
        '',
        '| family | indicator | quality penalty at severity 1 |',
        '|---|---|---|',
        *[f'| {f.name} | {f.indicator or "none (quality only)"} | {f.max_penalty:g} |'
          for f in families],
        '',
        (f'Each artifact is applied with probability {gen.get("probability")} and a severity '
         f'drawn from {gen.get("severity")}; penalties add up (quality clipped at 0).'
         if gen else ''),
        '',
        'What this means for real scans: the quality score measures how strongly a scan '
        'resembles our simulated corruptions, not a radiologist\'s judgement. Real motion, '
        'ghosting and inhomogeneity look different from their simulations in many ways; the '
        'indicators ' + ', '.join(untrained) + ' were never trained (unknown labels) and their '
        'outputs are meaningless. '
        'Scans unlike the training bases (other contrasts, children, 4D, CT) are out of '
        'distribution. Use it to sort and flag scans for human review, never to reject them '
        'automatically; fine-tune on a project\'s own review decisions (a label CSV) when '
        'there are enough.',
        '',
    ]


def _data_section(metrics: dict) -> list[str]:
    """Development and held-out subjects, volume counts."""
    return [
        '## Data',
        '',
        f'- development subjects (folds): {", ".join(metrics.get("development_subjects", []))}',
        f'- held-out test subjects (never trained on, every scan of them): '
        f'{", ".join(metrics.get("test_subjects", [])) or "none"}',
        f'- volumes: {metrics.get("volumes")}',
        '',
    ]


def _training_section(metrics: dict) -> list[str]:
    """Loss, optimiser, epochs, tiles and augmentation."""
    cfg = metrics.get('config', {})
    gw = float(cfg.get('global_view_weight') or 0.0)
    return [
        '## Training',
        '',
        f'Loss: Huber on quality + {cfg.get("indicator_weight")} × focal loss '
        f'(γ={cfg.get("focal_gamma")}) on the indicators, unknown labels masked. AdamW '
        f'(lr {cfg.get("learning_rate")}, weight decay {cfg.get("weight_decay")}), exponential '
        f'decay {cfg.get("lr_decay")} per epoch, {cfg.get("epochs")} epochs per fold, '
        f'{metrics.get("final_epochs")} for the final model, {cfg.get("tiles_per_volume")} '
        f'random tiles per volume per epoch'
        + (f' plus {cfg.get("views_per_volume", 1)} copies of its whole-volume view' if gw else '')
        + (', each randomly flipped along every axis and with its axes in random order'
           if cfg.get('augment') else '')
        + f', batch {cfg.get("batch_size")}, seed {cfg.get("seed")}.'
        + (' Beside the 11 outputs the network regresses the quality points each simulated '
           f'family costs ({", ".join(metrics.get("penalty_families") or [])}: penalty × '
           'severity, Huber, weight 1; local families from whole-volume views only); the '
           'worker reports them as `penalties`.' if metrics.get('penalty_families') else '')
        + ' Folds split by subject. A tile carries its volume\'s quality and '
        'indicators, except for local artifacts: `incomplete_coverage` is positive only in '
        'tiles touching the cut face and `wraparound` only in tiles holding folded-in tissue, '
        'so their mean-over-tiles probabilities at inference are lower than the other '
        'indicators\' (rank or threshold them accordingly).',
        '',
    ]


def _held_out_section(metrics: dict) -> list[str]:
    """The held-out figures against the bar."""
    held = metrics.get('held_out_summary') or {}
    lines: list[str] = []
    lines += ['## Held-out metrics (test subjects, final model)', '']
    if held:
        lines += [f'- quality R² {_fmt(held.get("r2"))} (bar {R2_BAR}), MAE '
                  f'{_fmt(held.get("mae"), 2)}; {held.get("volumes")} volumes',
                  '- artifact family ROC AUC (bar 0.90): ' + ', '.join(
                      f'{k} {_fmt(v)}' for k, v in held.get('family_auc', {}).items()),
                  f'- bar met: **{"yes" if held.get("bar_met") else "no"}**', '']
        below = [k for k, v in held.get('family_auc', {}).items() if v is None or v < AUC_BAR]
        if below or (held.get('r2') or 0) < R2_BAR:
            lines += ['Below the bar: ' + ', '.join(
                ([f'quality R² {_fmt(held.get("r2"))}'] if (held.get('r2') or 0) < R2_BAR
                 else []) + [f'{k} AUC {_below(held["family_auc"][k], AUC_BAR)}'
                             for k in below])
                + '. Treat those outputs as weak hints; they were not good enough on '
                'held-out simulated data, let alone real scans.', '']
    else:
        lines += ['No held-out subjects in this run.', '']
    return lines


def _blend_section(metrics: dict) -> list[str]:
    """The view's share per output and the out-of-fold scores that chose it."""
    gw = float(metrics.get('config', {}).get('global_view_weight') or 0.0)
    lines: list[str] = []
    chosen = metrics.get('view_weights')
    if chosen and chosen.get('weights'):
        oof_c, oof_d = chosen.get('out_of_fold_chosen', {}), chosen.get('out_of_fold_default', {})
        lines += ['## Blend of tiles and whole-volume view, per output', '',
                  'The view\'s share in each output was chosen on the pooled out-of-fold '
                  'predictions of the fold models (quality by R², indicators by ROC AUC; on a '
                  f'tie, the share nearest the training share {gw:g}), never on the held-out '
                  'subjects. '
                  'The shipped `model.json` carries them as `view_weights`.', '',
                  '| output | view share | out-of-fold score at each share |', '|---|---|---|']
        for name, share in chosen['weights'].items():
            row = chosen.get('scores', {}).get(name)
            if row is None:
                continue
            lines.append(f'| {name} | {share:g} | ' + ', '.join(
                f'{k}: {_fmt(v)}' for k, v in row.items()) + ' |')
        lines += ['', f'Out of fold, quality R² {_fmt(oof_d.get("r2"))} at the training share '
                  f'and {_fmt(oof_c.get("r2"))} with the chosen blend (the same volumes chose '
                  'it, so this gain is optimistic; the held-out figures above are not).', '']
    return lines


def _cv_section(metrics: dict) -> list[str]:
    """One row per subject fold."""
    families = _families(metrics)
    lines: list[str] = []
    cv = metrics.get('cross_validation')
    if cv:
        lines += ['## Cross-validation (validation folds = unseen subjects)', '',
                  '| fold | validation subjects | train R² | val R² | ' + ' | '.join(
                      f'{f.name} AUC' for f in families) + ' |',
                  '|---|---|---|---|' + '---|' * len(families)]
        for f in metrics.get('folds', []):
            fam = f['validation'].get('family_auc', {})
            lines.append(f'| {f["fold"]} | {", ".join(f["val_subjects"])} | '
                         f'{_fmt(f["train"].get("r2"))} | {_fmt(f["validation"].get("r2"))} | '
                         + ' | '.join(_fmt((fam.get(f.name) or {}).get('auc'))
                                      for f in families)
                         + ' |')
        lines += ['', f'Mean validation R² {_fmt(cv["val_r2"]["mean"])} '
                  f'± {_fmt(cv["val_r2"]["std"])}.', '']
    return lines


def _baseline_section(metrics: dict) -> list[str]:
    """The CNN next to the IQM baseline on the held-out volumes."""
    held = metrics.get('held_out_summary') or {}
    lines: list[str] = []
    base = metrics.get('baseline')
    if base and base.get('test'):
        lines += ['## CNN against the IQM baseline (held-out test)', '',
                  '| metric | CNN | IQM baseline |', '|---|---|---|',
                  f'| quality R² | {_fmt(held.get("r2"))} | {_fmt(base["test"].get("r2"))} |']
        for k, v in held.get('family_auc', {}).items():
            b = ((base['test'].get('family_auc') or {}).get(k) or {}).get('auc')
            lines.append(f'| {k} AUC | {_fmt(v)} | {_fmt(b)} |')
        lines += ['', f'Baseline: {base.get("description", "")}', '']
    return lines


def _real_scans_section(metrics: dict) -> list[str]:
    """The final model on the unmodified real scans."""
    untrained = _untrained(metrics)
    lines: list[str] = []
    real = metrics.get('real_scans')
    if real:
        shown = [k for k in ('ghosting_motion', 'inhomogeneity', 'wraparound',
                             'incomplete_coverage', 'truncation') if k not in untrained]
        lines += ['## The model on the unmodified real scans (no labels; a sanity look)', '',
                  'Bases are augmented before use, so even "training" scans were never seen '
                  'as they are. Indicator columns are the scan-level probabilities (as the '
                  'worker reports them).', '',
                  '| scan | subject (role) | quality | ' + ' | '.join(shown) + ' |',
                  '|---|---|---|' + '---|' * len(shown)]
        for r in real:
            if 'error' in r:
                lines.append(f'| {r["file"]} | unreadable: {r["error"][:60]} |'
                             + ' |' * (len(shown) + 1))
                continue
            a = r['artifacts']
            lines.append(f'| {r["file"]} | {r["subject"]} | {r["quality"]:.1f} | '
                         + ' | '.join(f'{a[k]:.2f}' for k in shown) + ' |')
        lines.append('')
    return lines


def _reproduce_section(metrics: dict) -> list[str]:
    """The commands (or the recipe) that make this model again."""
    gen = metrics.get('generator') or {}
    lines: list[str] = []
    if metrics.get('recipe'):
        return ['## Reproduce', '', '```', f'miqa-train run --recipe {metrics["recipe"]}', '```',
                '', 'The recipe (shipped beside the model as `recipe.json`) generates the '
                'caches and runs every stage in order; `--plan` prints them. This run: '
                f'`{metrics.get("command")}`.', '']
    if gen or metrics.get('command'):
        lines += ['## Reproduce', '', '```']
        caches = [(metrics.get('cache', 'CACHE'), gen)] + [
            (c['cache'], c['generator'])
            for c in (metrics.get('fusion') or {}).get('fresh_caches') or []]
        for cache, settings in caches:
            if settings:
                lines.append(_generate_command(cache, settings))
        if metrics.get('command'):
            lines.append(metrics['command'])
        lines += ['```', '', 'Real bases are read from ../shared/data/mri when present '
                  f'({len(gen.get("sources", [])) if gen else "?"} bases in this run).', '']
    return lines


def _limits_section(metrics: dict) -> list[str]:
    """What the figures do not show."""
    cfg = metrics.get('config', {})
    lines: list[str] = []
    lines += ['## Limits', '',
              '- Few real anatomies (a handful of subjects); each fold holds out one subject.',
              f'- Fold models are trained for {cfg.get("epochs")} epochs and the final model '
              f'for {metrics.get("final_epochs")} (CPU budget), so cross-validation '
              'understates the final model; the held-out test is the figure to quote.',
              '- Synthetic labels only; no real-scan ratings were used for training or testing.',
              '- The held-out subjects are fixed (role `held-out` in the data manifest) and '
              'earlier model versions were evaluated on them too; design changes made after seeing '
              'those figures make the held-out test less than fully blind.',
              '- Noise has no indicator: its AUC is measured with the quality score on '
              'noise-only against clean volumes.',
              '- Plots: ' + ', '.join(PLOTS) + ' in the report folder.', '']
    return lines


SECTIONS = (_what_it_is, _simulated_section, _data_section, _training_section,
            _held_out_section, _fusion_section, _blend_section, _cv_section, _baseline_section,
            _real_scans_section, _reproduce_section, _limits_section)


def model_card(metrics: dict) -> str:
    """MODEL_CARD.md text from the metrics: the title, then each of :data:`SECTIONS`."""
    lines = ['# MIQA default model', '']
    for section in SECTIONS:
        lines += section(metrics)
    return '\n'.join(lines)


def write_report(results: dict, data: VolumeSet, out_dir: Path) -> dict:
    """Write metrics.json, the PNG plots and MODEL_CARD.md into ``out_dir`` from a run's
    ``results.json`` (``RunResults.to_dict``): a report can be made again from the file."""
    metrics = build_metrics(results)
    (out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=1) + '\n', encoding='utf-8')
    _plots(results, data, out_dir)
    (out_dir / 'MODEL_CARD.md').write_text(model_card(metrics), encoding='utf-8')
    return metrics
