"""How much a project's raters agree (issue #23): Cohen's kappa per pair of tier-1 raters,
Fleiss' kappa for the project, agreement per artifact, tier 1 against tier 2, humans against the
model, each reviewer against the gold standard, time and confidence per reviewer, and the
hidden-assessment arm against the shown one.

Every figure comes with its number of scans ``n`` and a 95 % interval from a seeded bootstrap
over scans (``BOOTSTRAP`` resamples; None with fewer than ``MIN_N`` scans or when the resamples
leave it undefined). Kappas come from scikit-learn (``cohen_kappa_score``) and statsmodels
(``fleiss_kappa``); a kappa is None when it is undefined (every rating in one category).

Binary figures call a scan *flagged* when its decision is questionable (tier 1) or bad (tier 2).
Only settled decisions count (no pending first reads, nothing superseded), only on scans the
user can read now; gold re-reads count only against the gold standard and in the arms' timing.
"""

import datetime
import hashlib
import math
import statistics
import warnings
from collections.abc import Callable
from itertools import combinations

import numpy as np

from .. import settings
from ..constants import ITEM_FIELD, AssessmentStatus, ReviewState
from . import calibration
from .decision import Decision
from .scans import visible_filter

BOOTSTRAP = 400
SEED = 0
MIN_N = 3
FLAGGED = (ReviewState.QUESTIONABLE, ReviewState.BAD)


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def cohen(a: list, b: list) -> float | None:
    """Cohen's kappa of two raters' labels (scikit-learn); None when undefined."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None
    if len(set(a) | set(b)) < 2:  # one category for both: kappa is 0/0
        return None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return _finite(cohen_kappa_score(a, b))


def fleiss(rows: list[tuple]) -> float | None:
    """Fleiss' kappa (statsmodels) of scans each rated by the same number of raters."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    if not rows:
        return None
    table, _categories = aggregate_raters(np.array(rows, dtype=object).astype(str))
    if table.shape[1] < 2:
        return None
    with warnings.catch_warnings(), np.errstate(all='ignore'):
        warnings.simplefilter('ignore')
        return _finite(fleiss_kappa(table, method='fleiss'))


def proportion(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def mean(values: list) -> float | None:
    return statistics.fmean(values) if values else None


def with_interval(units: list, statistic: Callable[[list], float | None],
                  seed: int = SEED, many: Callable[[np.ndarray], np.ndarray] | None = None
                  ) -> dict:
    """``{value, low, high, n}``: the statistic over ``units`` (one per scan) and a 95 %
    percentile interval from ``BOOTSTRAP`` seeded resamples of the units.

    Args:
        many: the statistic of every resample at once, from their (resamples, n) unit indices
            (NaN where undefined); without it each resample is computed alone.
    """
    value = statistic(units) if units else None
    low = high = None
    if len(units) >= MIN_N and value is not None:
        rng = np.random.default_rng(seed)
        index = rng.integers(0, len(units), (BOOTSTRAP, len(units)))
        if many is not None:
            draws = [float(v) for v in many(index) if math.isfinite(v)]
        else:
            draws = [v for v in (statistic([units[i] for i in row]) for row in index)
                     if v is not None]
        if len(draws) >= BOOTSTRAP // 2:
            low, high = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
    return {'value': value, 'low': low, 'high': high, 'n': len(units)}


def _pair_kappa(units: list) -> float | None:
    return cohen([u[0] for u in units], [u[1] for u in units])


def _pair_percent(units: list) -> float | None:
    return proportion([u[0] == u[1] for u in units])


def kappa_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each row of two (resamples, n) integer label arrays, all at once (the
    bootstrap's; the value reported is scikit-learn's); NaN where undefined."""
    categories = np.union1d(np.unique(a), np.unique(b))
    pa = np.stack([(a == c).mean(1) for c in categories], 1)
    pb = np.stack([(b == c).mean(1) for c in categories], 1)
    observed, expected = (a == b).mean(1), (pa * pb).sum(1)
    with np.errstate(all='ignore'):
        kappa = (observed - expected) / (1 - expected)
    kappa[np.isclose(expected, 1.0)] = np.nan
    return kappa


def kappa_interval(units: list) -> dict:
    """Cohen's kappa of (label a, label b) units with its bootstrap interval."""
    codes = {label: i for i, label in enumerate(sorted({str(x) for u in units for x in u}))}
    a = np.array([codes[str(u[0])] for u in units], dtype=int)
    b = np.array([codes[str(u[1])] for u in units], dtype=int)
    return with_interval(units, _pair_kappa, many=lambda idx: kappa_many(a[idx], b[idx]))


def share_interval(values: list) -> dict:
    """The mean of numbers (or the share of true values) with its bootstrap interval."""
    array = np.array(values, dtype=float)
    return with_interval(values, mean if values and not isinstance(values[0], bool) else (
        proportion), many=lambda idx: array[idx].mean(1))


def pairwise(units: list) -> dict:
    """Cohen's kappa and percent agreement of (label a, label b) units, with intervals."""
    return {'kappa': kappa_interval(units),
            'agreement': share_interval([u[0] == u[1] for u in units])}


def _time_spent(doc: dict) -> float | None:
    """Seconds on a scan: what the client sent, else the decision's time minus its lock's."""
    if doc.get('seconds') is not None:
        return float(doc['seconds'])
    acquired, created = doc.get('lockAcquired'), doc.get('created')
    if isinstance(acquired, datetime.datetime) and isinstance(created, datetime.datetime):
        return max(0.0, (_naive(created) - _naive(acquired)).total_seconds())
    return None


def _naive(value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def model_flags(snapshot: dict | None) -> bool | None:
    """Whether the model, as a decision saw it, called the scan suspicious (None: no score)."""
    if not snapshot or snapshot.get('status') != AssessmentStatus.DONE or not isinstance(
            snapshot.get('quality'), (int, float)):
        return None
    quality, probability = settings.suspicion_thresholds()
    probs = snapshot.get('artifacts') or {}
    return snapshot['quality'] < quality or any(p > probability for p in probs.values()
                                                if isinstance(p, (int, float)))


class Raters:
    """Reviewers' labels in this answer: names for project admins, pseudonyms for others
    (each reader also sees their own name)."""

    def __init__(self, project: dict, user: dict | None, named: bool):
        self.project, self.user, self.named = project, user, named
        self.people: dict = {}

    def add(self, doc: dict) -> None:
        self.people.setdefault(doc['login'], {'login': doc['login'],
                                              'name': doc.get('userName') or doc['login'],
                                              'userId': doc.get('userId')})

    def labels(self) -> dict:
        order = sorted(self.people, key=lambda login: hashlib.sha256(
            f'{self.project["_id"]}:{login}'.encode()).hexdigest())
        own = (self.user or {}).get('login')
        return {login: login if self.named or login == own else f'Reviewer {i + 1}'
                for i, login in enumerate(order)}


def compute(project: dict, user: dict | None, named: bool) -> dict:
    """Every agreement figure of the project over the scans ``user`` can read (see module)."""
    scans = {doc['_id']: doc for doc in Decision().collection.database['item'].find(
        visible_filter(project, user), {'folderId': 1, ITEM_FIELD: 1})}
    ids = list(scans)
    trail = list(Decision().collection.find(
        {'projectId': project['_id'], 'itemId': {'$in': ids}, 'superseded': {'$ne': True},
         **calibration.pending_clause()}, sort=[('created', 1), ('_id', 1)]))
    goldReads = list(calibration.GoldRead().collection.find(
        {'projectId': project['_id'], 'itemId': {'$in': ids}}, sort=[('created', 1)]))
    refs = {doc['_id']: doc for doc in calibration.Gold().find(
        {'projectId': project['_id'], '_id': {'$in': ids}})}
    raters = Raters(project, user, named)
    for doc in trail + goldReads:
        raters.add(doc)
    label = raters.labels()

    # per scan: each reviewer's latest tier-1 read, and the latest tier-2 decision
    tier1: dict = {}
    tier2: dict = {}
    for doc in trail:
        if doc['tier'] == 1:
            tier1.setdefault(doc['itemId'], {})[doc['login']] = doc
        else:
            tier2[doc['itemId']] = doc

    def reads_of(itemId) -> list[dict]:
        return sorted(tier1.get(itemId, {}).values(), key=lambda d: d['created'])

    # Cohen's kappa per pair of tier-1 raters
    pairs: dict = {}
    for itemId in tier1:
        for a, b in combinations(sorted(tier1[itemId].values(), key=lambda d: label[
                d['login']]), 2):
            pairs.setdefault((a['login'], b['login']), []).append((a['decision'], b['decision']))
    pairRows = [{'raters': [label[a], label[b]], **pairwise(units)}
                for (a, b), units in sorted(pairs.items(), key=lambda kv: (
                    label[kv[0][0]], label[kv[0][1]]))]

    # Fleiss' kappa: scans with two or more tier-1 readers, their first two reads
    multi = [itemId for itemId in tier1 if len(tier1[itemId]) >= 2]
    fleissUnits = [tuple(d['decision'] for d in reads_of(itemId)[:2]) for itemId in multi]
    fleissOut = with_interval(fleissUnits, fleiss)

    # per artifact: the first two tier-1 reads of a scan that both stated it
    artifacts = []
    for entry in project['settings']['artifacts']:
        key = entry['key']
        units = []
        for itemId in multi:
            a, b = reads_of(itemId)[:2]
            va, vb = (a.get('artifacts') or {}).get(key), (b.get('artifacts') or {}).get(key)
            if va and vb:
                units.append((va, vb))
        artifacts.append({'key': key, 'label': entry['label'], **pairwise(units)})

    # tier 1 against tier 2: the latest tier-1 read flagged vs tier 2 bad
    t12 = []
    for itemId, final in tier2.items():
        reads = reads_of(itemId)
        if reads:
            t12.append((reads[-1]['decision'] in FLAGGED, final['decision'] in FLAGGED))

    # humans against the model: each scan's latest tier-1 read, with a score the reader saw
    hm = []
    for itemId in tier1:
        last = reads_of(itemId)[-1]
        flags = model_flags(last.get('assessment'))
        if flags is not None and not last.get('assessmentHidden'):
            hm.append((flags, last['decision'] in FLAGGED))

    # each reviewer against the gold standard: gold re-reads and reviews of reference scans
    goldUnits: dict = {}
    for doc in trail + goldReads:
        ref = refs.get(doc['itemId'])
        if ref is None or doc['tier'] != 1:
            continue
        truth = calibration.flag_decision(ref['decision'])
        agree = not calibration.reads_disagree(
            doc, {'decision': truth, 'artifacts': ref.get('artifacts') or {}})
        goldUnits.setdefault(doc['login'], []).append(
            (doc['created'], agree, doc['decision'] in FLAGGED, truth in FLAGGED))

    reviewers = []
    for login in sorted(raters.people, key=lambda k: label[k]):
        mine = [d for d in trail if d['login'] == login]
        reads = mine + [d for d in goldReads if d['login'] == login]
        times = [t for t in (_time_spent(d) for d in reads) if t is not None]
        confidence = [d['confidence'] for d in reads if d.get('confidence') is not None]
        gold = sorted(goldUnits.get(login, []), key=lambda u: u[0])
        timeline, agreed = [], 0
        for i, (created, agree, _f, _t) in enumerate(gold):
            agreed += agree
            timeline.append({'created': created, 'agree': agree,
                             'cumulative': agreed / (i + 1)})
        t2 = [(d['decision'] in FLAGGED, tier2[d['itemId']]['decision'] in FLAGGED)
              for d in mine if d['tier'] == 1 and d['itemId'] in tier2]
        reviewers.append({
            'reviewer': label[login],
            **({'login': login, 'name': raters.people[login]['name']} if named or (
                login == (user or {}).get('login')) else {}),
            'decisions': len(mine), 'goldReads': len(reads) - len(mine),
            'tier1': sum(d['tier'] == 1 for d in mine), 'tier2': sum(d['tier'] == 2 for d in mine),
            'seconds': {'median': statistics.median(times) if times else None,
                        'mean': mean(times), 'n': len(times)},
            'confidence': {'mean': mean(confidence), 'n': len(confidence)},
            'gold': {'agreement': share_interval([u[1] for u in gold]),
                     'kappa': kappa_interval([(u[2], u[3]) for u in gold]),
                     'timeline': timeline},
            'tier2Agreement': share_interval([a == b for a, b in t2]),
        })

    return {
        'projectId': project['_id'],
        'named': named,
        'bootstrap': {'resamples': BOOTSTRAP, 'seed': SEED, 'interval': 0.95, 'minN': MIN_N},
        'settings': {k: project['settings'].get(k, 0) for k in (
            'doubleReadShare', 'goldRate', 'hideAssessmentShare')},
        'pairs': pairRows,
        'fleiss': {**fleissOut, 'raters': 2,
                   'description': 'Tier-1 decisions, the first two reads of each scan read by '
                                  'two or more reviewers.'},
        'artifacts': artifacts,
        'tier1VsTier2': {**pairwise(t12), 'description':
                         'The latest tier-1 read flagged (questionable) against tier 2 bad, '
                         'over scans with both.'},
        'humansVsModel': {**pairwise(hm), 'description':
                          'The model suspicious as the reader saw it (quality or a trained '
                          'indicator past the suspicion thresholds) against the latest tier-1 '
                          'read flagged; reads with the assessment hidden left out.'},
        'gold': {'references': len(refs), 'reads': len(goldReads),
                 'agreement': share_interval([u[1] for units in goldUnits.values()
                                              for u in units])},
        'reviewers': reviewers,
        'arms': arms(trail, goldReads, tier2),
    }


def arms(trail: list[dict], goldReads: list[dict], tier2: dict) -> dict:
    """The hidden-assessment arm against the shown one, over tier-1 reads of scans tier 2
    decided: time per scan, agreement with tier 2 (flagged vs bad), and the share of tier-2-bad
    scans flagged at tier 1. Tier 2 mostly sees flagged scans, so ``caught`` reads as the
    arms' difference, not as an absolute sensitivity."""
    out = {}
    for name, hidden in (('shown', False), ('hidden', True)):
        reads = [d for d in trail if d['tier'] == 1 and bool(d.get('assessmentHidden')) == hidden]
        timed = [t for t in (_time_spent(d) for d in reads + [
            g for g in goldReads if bool(g.get('assessmentHidden')) == hidden]) if t is not None]
        judged = [d for d in reads if d['itemId'] in tier2]
        agree = [(d['decision'] in FLAGGED) == (tier2[d['itemId']]['decision'] in FLAGGED)
                 for d in judged]
        bad = [d['decision'] in FLAGGED for d in judged
               if tier2[d['itemId']]['decision'] == ReviewState.BAD]
        out[name] = {'reads': len(reads), 'seconds': share_interval(timed),
                     'tier2Agreement': share_interval(agree),
                     'caught': share_interval(bad)}
    return out
