"""The review state of a scan, kept in the protected top-level item field ``item['miqa']``.

Schema (only this plugin writes it)::

    item['miqa'] = {
        'projectId': ObjectId,           # the project's _id (its folder's or collection's id)
        'state': 'unreviewed' | 'questionable' | 'good' | 'bad',
        'created': datetime,             # when the item became a scan
        'updated': datetime,             # last change of state, decision or lock
        'rev': int,                      # bumped by every state change (conditional updates)
        'decisionCount': int,            # decisions in miqa_decision since the review last
                                         # (re)started (the superseded ones not counted)
        'latestDecision': {...} | None,  # a copy of the newest such decision (models/decision.py)
        'tier1': {'decision', 'userId', 'created'} | None,  # the newest tier-1 decision
        'lock': {'userId', 'login', 'name', 'acquired', 'expires'} | None,
        'sort': {                        # precomputed queue order (compound index)
            'rank': -1 | 0 | 1 | 2,      # 0: assessed (done), 1: not assessed yet; an
                                         # out-of-scope scan's band: -1 first, 0 mixed, 2 last
                                         # (the project's ``outOfScope`` setting)
            'outOfScope': bool,          # the assessment says the scan is outside the domain
            'quality': float | None,     # predicted quality, lowest first
            'artifact': float | None,    # minus the highest trained indicator's probability
            'triage': float,             # the triage score, highest first (models/triage.py)
            'created': datetime,         # the item's creation time, oldest first
        },
        'file': {'_id', 'name', 'size', 'sha512', 'created'} | None,  # the image file this
                                         # review is about (None: not known yet, e.g. moved in)
        'restarts': int,                 # times the review started over (new file, moved)
        'assessment': {                  # the automatic assessment, see AssessmentStatus
            'status': str, 'reason': str | None, 'jobId': ObjectId | None, 'updated': datetime,
            ... the worker's result when status == 'done' (quality, artifacts, tileMap, metrics,
            model, volume, timings, trainedOutputs, scope)
        },
        'site': str, 'scanType': str,    # the scan's group (models/sites.py), when assessed
        'protocol': {'deviations', 'checked'} | None,  # models/triage.py keeps these four
        'metrics': {'group', 'peers', 'minimumPeers', 'enough', 'note', 'percentiles', 'z',
                    'outliers'} | None,
        'reasons': [{'source', 'severity', 'text', 'label', 'target', 'weight'}],
    }

When the image file changes (a new one uploaded into the item, its content replaced, or it
is removed), or the scan moves into a project whose ``restartOnMove`` setting is on, the review
starts over (``restart``): the earlier decisions stay in ``miqa_decision`` marked
``superseded: True`` (with ``supersededReason`` 'file_changed', 'file_removed' or 'moved'), and
the state, counts, latest decision and tier-1 decision are those of a new scan. Copies of a scan
are new scans of the project they land in (see models/copies.py).

A scan moved out of every project keeps this state under ``item['miqaDetached']`` (not exposed,
outside every queue and count; its lock dropped, plus ``detached`` and ``detachedFrom``); moved
into a project again it gets it back as ``item['miqa']`` with the new ``projectId``.
"""

import datetime

from girder import events
from girder.models.item import Item

from .. import settings
from ..constants import (
    DECISION_COLLECTION,
    ITEM_FIELD,
    JOB_TYPE,
    PROJECT_COLLECTION,
    AssessmentStatus,
    ReviewState,
    is_image_name,
)

DETACHED_FIELD = 'miqaDetached'
# Triggered when a scan's review restarts about another image file (its assessment reset), with
# {'itemId'}: its pending assessment jobs no longer count (handlers.on_assessment_reset).
ASSESSMENT_RESET_EVENT = 'miqa.assessment.reset'
# Triggered when a finished or failed result was stored on a scan, with {'itemId'}: its group's
# reasons and triage are recomputed (handlers.on_assessment_result, models/triage.py).
ASSESSMENT_STORED_EVENT = 'miqa.assessment.stored'


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def lock_duration() -> datetime.timedelta:
    """The current lock lifetime (the ``miqa.lock_seconds`` setting, read at call time)."""
    return datetime.timedelta(seconds=settings.lock_seconds())


def artifact_probabilities(assessment: dict | None) -> dict[str, float]:
    """The model's artifact probabilities as {key: p}, whatever shape the worker sent them in."""
    if not assessment:
        return {}
    raw = assessment.get('artifacts')
    out: dict[str, float] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, dict):
                value = value.get('probability', value.get('prob'))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[str(key)] = float(value)
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict) and entry.get('key') is not None:
                value = entry.get('probability', entry.get('prob'))
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[str(entry['key'])] = float(value)
    return out


# The indicators an older result (no ``trainedOutputs``, miqa-default <= 0.6) was trained on:
# its model card calls the other six (normal_variant, lesion, misalignment,
# susceptibility_metal, flow_artifact, truncation) untrained and their outputs meaningless.
LEGACY_TRAINED = ('incomplete_coverage', 'wraparound', 'ghosting_motion', 'inhomogeneity')


def trained_indicators(assessment: dict | None) -> list[str]:
    """The indicators the assessment's model was trained on: its ``trainedOutputs`` less
    quality; for an older result that does not name them, :data:`LEGACY_TRAINED` (every other
    output of it counts as untrained)."""
    trained = (assessment or {}).get('trainedOutputs')
    if not isinstance(trained, list):
        return list(LEGACY_TRAINED)
    return [str(name) for name in trained if isinstance(name, str) and name != 'quality']


def trained_probabilities(assessment: dict | None) -> dict[str, float]:
    """The probabilities of the trained indicators only (see :func:`trained_indicators`): what
    the queue's suspicion, the suggestions and the exports use."""
    trained = set(trained_indicators(assessment))
    return {k: p for k, p in artifact_probabilities(assessment).items() if k in trained}


def _keep(raw, trained: set[str]):
    """``artifacts`` ({key: value} or [{key, ...}]) with the trained indicators only."""
    if isinstance(raw, dict):
        return {k: v for k, v in raw.items() if k in trained}
    if isinstance(raw, list):
        return [e for e in raw if isinstance(e, dict) and e.get('key') in trained]
    return raw


def trained_only(result: dict) -> dict:
    """A worker's result as it is stored and served: its untrained outputs (meaningless) are no
    probabilities anywhere (``artifacts``, ``tileMap.artifacts``, ``globalView.artifacts``), also
    when an older worker sent all of them."""
    trained = set(trained_indicators(result))
    out = dict(result)
    if 'artifacts' in out:
        out['artifacts'] = _keep(out['artifacts'], trained)
    for block in ('tileMap', 'globalView'):
        if isinstance(out.get(block), dict) and 'artifacts' in out[block]:
            out[block] = {**out[block], 'artifacts': _keep(out[block]['artifacts'], trained)}
    return out


def suggested_artifacts(assessment: dict | None, threshold: float | None = None) -> list[str]:
    """The artifacts the model suggests: trained indicators at or above ``threshold`` (the
    suspicion probability, ``miqa.suspicion_thresholds``), of a finished assessment."""
    if not assessment or assessment.get('status') != AssessmentStatus.DONE:
        return []
    if threshold is None:
        threshold = settings.suspicion_thresholds()[1]
    return [k for k, p in trained_probabilities(assessment).items() if p >= threshold]


def scope_of(assessment: dict | None) -> dict | None:
    """The assessment's ``scope`` ({in_scope, contrast, reason, source}) when it has one."""
    scope = (assessment or {}).get('scope')
    return scope if isinstance(scope, dict) else None


def out_of_scope(assessment: dict | None) -> bool:
    """Whether a finished assessment says its scan is outside the model's domain."""
    scope = scope_of(assessment)
    return bool(scope) and scope.get('in_scope') is False


NETWORK_WEIGHT = 10.0  # the floor of a network reason's weight, up to twice that (triage.py)


def network_reasons(assessment: dict | None, labels: dict | None = None,
                    thresholds: tuple[float, float] | None = None) -> list[dict]:
    """The network's reasons: predicted quality under the threshold, trained indicators at or
    over it, and (info) a scan outside the model's domain.

    Args:
        assessment: the scan's stored assessment (nothing unless it is done).
        labels: {artifact key: label} of the project's vocabulary, for the texts.
        thresholds: (quality, probability), read once by a caller scoring many scans
            (default: the ``miqa.suspicion_thresholds`` setting now).
    """
    if not assessment or assessment.get('status') != AssessmentStatus.DONE:
        return []
    labels = labels or {}
    quality_threshold, probability_threshold = thresholds or settings.suspicion_thresholds()
    out = []
    quality = assessment.get('quality')
    if isinstance(quality, (int, float)) and not isinstance(quality, bool) and (
            quality < quality_threshold):
        excess = (quality_threshold - quality) / quality_threshold if quality_threshold else 0
        out.append({
            'source': 'network', 'severity': 'warning',
            'text': f'predicted quality {quality:.1f} below {quality_threshold:g}',
            'label': 'predicted quality low', 'target': {'kind': 'indicator', 'key': 'quality'},
            'weight': round(NETWORK_WEIGHT * (1 + min(max(excess, 0.0), 1.0)), 3)})
    for key, p in sorted(trained_probabilities(assessment).items()):
        if p >= probability_threshold:
            room = 1.0 - probability_threshold
            excess = (p - probability_threshold) / room if room > 0 else 1.0
            label = labels.get(key, key.replace('_', ' '))
            out.append({
                'source': 'network', 'severity': 'warning',
                'text': f'{label} likely (p = {p:.2f})', 'label': f'{label} likely',
                'target': {'kind': 'indicator', 'key': key},
                'weight': round(NETWORK_WEIGHT * (1 + min(excess, 1.0)), 3)})
    if out_of_scope(assessment):
        scope = scope_of(assessment) or {}
        why = scope.get('reason') or scope.get('contrast') or 'outside the training domain'
        out.append({
            'source': 'network', 'severity': 'info',
            'text': f'outside the model\'s domain: {why}', 'label': 'outside the model\'s domain',
            'target': {'kind': 'indicator', 'key': 'scope'}, 'weight': 0.0})
    return out


def network_score(assessment: dict | None, thresholds: tuple[float, float] | None = None
                  ) -> float:
    """The triage score of the network's reasons alone (what a scan has until its group is
    refreshed, and what scans assessed before triage get)."""
    return round(sum(r['weight'] for r in network_reasons(assessment, None, thresholds)), 3)


OUT_OF_SCOPE_BANDS = {'first': -1, 'mixed': 0, 'last': 2}  # sort.rank of out-of-scope scans
OUT_OF_SCOPE_DEFAULT = 'last'


def sort_fields(assessment: dict | None, created, out_of_scope_band: str | None = None) -> dict:
    """The precomputed queue order for a scan with this assessment: quality, then the highest
    trained indicator (untrained outputs never raise a scan); an out-of-scope scan keeps its
    scores in the band ``out_of_scope_band`` says (the project's ``outOfScope``)."""
    if assessment and assessment.get('status') == AssessmentStatus.DONE and isinstance(
            assessment.get('quality'), (int, float)):
        probs = trained_probabilities(assessment)
        outside = out_of_scope(assessment)
        rank = OUT_OF_SCOPE_BANDS.get(out_of_scope_band or OUT_OF_SCOPE_DEFAULT, 2) if (
            outside) else 0
        return {'rank': rank, 'outOfScope': outside, 'quality': float(assessment['quality']),
                'artifact': -max(probs.values()) if probs else 0.0, 'created': created,
                'triage': network_score(assessment)}  # its group's refresh adds the rest
    return {'rank': 1, 'outOfScope': False, 'quality': None, 'artifact': None,
            'created': created, 'triage': 0.0}


def rerank_out_of_scope(projectId, band: str) -> int:
    """Move a project's out-of-scope scans into the band ``band`` (its ``outOfScope`` setting
    changed); how many scans moved."""
    return Item().collection.update_many(
        {f'{ITEM_FIELD}.projectId': projectId, f'{ITEM_FIELD}.sort.outOfScope': True},
        {'$set': {f'{ITEM_FIELD}.sort.rank': OUT_OF_SCOPE_BANDS[band]}}).modified_count


def file_ref(file: dict | None) -> dict | None:
    """What a scan and a decision keep of the image file they are about."""
    if not file:
        return None
    return {'_id': file['_id'], 'name': file.get('name'), 'size': file.get('size'),
            'sha512': file.get('sha512'), 'created': file.get('created')}


def current_image_file(itemId, exclude=None) -> dict | None:
    """The item's image file (the newest one with an image name), or None; ``exclude``: a file
    id to leave out (one being removed)."""
    from girder.models.file import File

    query = {'itemId': itemId}
    if exclude is not None:
        query['_id'] = {'$ne': exclude}
    for file in File().find(query, sort=[('created', -1)]):
        if is_image_name(file.get('name', '')):
            return file
    return None


def same_file(a: dict | None, b: dict | None) -> bool:
    """Whether two file references name the same content (id, size, checksum, time)."""
    if not a or not b:
        return not a and not b
    return all(a.get(k) == b.get(k) for k in ('_id', 'size', 'sha512')) and (
        _ms(a.get('created')) == _ms(b.get('created')))


def _ms(value):
    """A time to the millisecond (what MongoDB keeps), naive UTC, for comparisons."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def restart(itemId, reason: str, file: dict | None = None, keep_file: bool = False,
            keep_assessment: bool = False) -> bool:
    """Start a scan's review over: unreviewed, no decisions of its own, no lock; its earlier
    decisions stay in the trail marked superseded (``reason``). ``file``: the image file the
    review is now about (``keep_file``: keep the recorded one); the assessment is reset unless
    ``keep_assessment`` (the same file, e.g. a move). Counts follow; False if not a scan."""
    for _ in range(50):
        doc = Item().collection.find_one({'_id': itemId}, {'created': 1, ITEM_FIELD: 1})
        old = (doc or {}).get(ITEM_FIELD)
        if not old:
            return False
        now = _now()
        created = (old.get('sort') or {}).get('created') or doc.get('created') or now
        fields = {
            'state': ReviewState.UNREVIEWED, 'decisionCount': 0, 'latestDecision': None,
            'tier1': None, 'lock': None, 'updated': now, 'doubleRead': None,
        }
        if not keep_file:
            fields['file'] = file_ref(file)
        if not keep_assessment:
            fields['assessment'] = {'status': AssessmentStatus.NOT_SCHEDULED, 'reason': None,
                                    'jobId': None, 'updated': now}
            fields['sort'] = sort_fields(None, created)
            fields.update(reasons=[], metrics=None, protocol=None)  # triage.py's, of the old
        update = {'$set': {f'{ITEM_FIELD}.{k}': v for k, v in fields.items()},
                  '$inc': {f'{ITEM_FIELD}.rev': 1, f'{ITEM_FIELD}.restarts': 1}}
        if Item().collection.update_one(
                {'_id': itemId, f'{ITEM_FIELD}.rev': old.get('rev', 0)}, update).modified_count:
            Item().collection.database[DECISION_COLLECTION].update_many(
                {'itemId': itemId, 'superseded': {'$ne': True}, 'created': {'$lte': now}},
                {'$set': {'superseded': True, 'supersededReason': reason,
                          'supersededAt': now}})
            count_transition(old['projectId'], old.get('state'), ReviewState.UNREVIEWED)
            if not keep_assessment:  # handlers.on_assessment_reset cancels its pending jobs
                events.trigger(ASSESSMENT_RESET_EVENT, {'itemId': itemId})
            return True
    return False


def cancel_pending_jobs(itemId, statuses) -> None:
    """Cancel the scan's assessment jobs in one of ``statuses`` (the pending ones: they assess a
    file it no longer is about), so the new file's assessment is not taken for one already
    pending. Never raises."""
    import logging

    try:
        from girder_jobs.models.job import Job

        for job in Job().find({'type': JOB_TYPE, 'meta.itemId': str(itemId),
                               'status': {'$in': list(statuses)}}):
            Job().cancelJob(job)
    except Exception:
        logging.getLogger(__name__).exception(
            'Could not cancel the pending assessment jobs of item %s', itemId)


def image_changed(itemId, file: dict) -> bool:
    """``file`` (an image) was just uploaded into a scan, or its content replaced: start the
    review over unless it is the file the review is already about; True if it restarted."""
    doc = Item().collection.find_one({'_id': itemId}, {ITEM_FIELD: 1})
    old = (doc or {}).get(ITEM_FIELD)
    if not old:
        return False
    ref = file_ref(file)
    if same_file(old.get('file'), ref):
        return False
    if not old.get('file') and not old.get('decisionCount') and (
            old.get('state') == ReviewState.UNREVIEWED):
        Item().collection.update_one(  # a new scan: this is its file
            {'_id': itemId, f'{ITEM_FIELD}.file': None}, {'$set': {f'{ITEM_FIELD}.file': ref}})
        return False
    return restart(itemId, 'file_changed', file=file)


def initial_state(item: dict, project: dict) -> dict:
    """The review state of a scan nobody has looked at yet."""
    now = _now()
    created = item.get('created') or now
    return {
        'projectId': project['_id'],
        'state': ReviewState.UNREVIEWED,
        'created': now,
        'updated': now,
        'rev': 0,
        'decisionCount': 0,
        'latestDecision': None,
        'tier1': None,
        'lock': None,
        'file': None,
        'restarts': 0,
        'sort': sort_fields(None, created),
        'assessment': {'status': AssessmentStatus.NOT_SCHEDULED, 'reason': None, 'jobId': None,
                       'updated': now},
    }


def _projects():
    """The projects' collection, by name (``Project`` itself imports this module)."""
    return Item().collection.database[PROJECT_COLLECTION]


def count_transition(projectId, old: str | None, new: str | None) -> None:
    """Keep the project's per-state counts (``project['counts']``) exact as a scan moves.

    ``old`` None: a new scan; ``new`` None: a scan removed. New and removed scans also bump
    ``scanRev`` (which keys the cached folder visibility); every change bumps ``rev``.
    """
    inc = {'rev': 1}
    if old == new:
        return
    if old is not None:
        inc[f'counts.{old}'] = -1
    if new is not None:
        inc[f'counts.{new}'] = 1
    if old is None or new is None:
        inc['scanRev'] = 1
    _projects().update_one({'_id': projectId}, {'$inc': inc})


def count_states(projectId) -> dict:
    """A project's per-state counts computed from its scans (one aggregation; stores nothing)."""
    counts = dict.fromkeys(ReviewState.ALL, 0)
    for row in Item().collection.aggregate([
            {'$match': {f'{ITEM_FIELD}.projectId': projectId}},
            {'$group': {'_id': f'${ITEM_FIELD}.state', 'n': {'$sum': 1}}}]):
        counts[row['_id']] = row['n']
    return counts


def recount(projectId, scans_changed: bool = True) -> dict:
    """Recompute and store a project's per-state counts from its scans (self-healing)."""
    counts = count_states(projectId)
    inc = {'rev': 1, 'scanRev': 1} if scans_changed else {'rev': 1}
    _projects().update_one({'_id': projectId}, {'$set': {'counts': counts}, '$inc': inc})
    return counts


def scan_removed(item: dict) -> None:
    """A deleted item that was a scan leaves its project's counts."""
    state = item.get(ITEM_FIELD)
    if state and state.get('projectId'):
        count_transition(state['projectId'], state.get('state'), None)


def apply_deltas(deltas: dict) -> None:
    """Add ``{projectId: {state: n}}`` to the projects' counts (scans moved in or out)."""
    for projectId, byState in deltas.items():
        inc = {f'counts.{state}': n for state, n in byState.items() if n}
        if inc:
            _projects().update_one({'_id': projectId}, {'$inc': {**inc, 'rev': 1, 'scanRev': 1}})


def reattach(itemId, projectId) -> str | None:
    """Give a detached scan its kept state back, in ``projectId``; its state, or None."""
    doc = Item().collection.find_one_and_update(
        {'_id': itemId, ITEM_FIELD: {'$exists': False}, DETACHED_FIELD: {'$exists': True}},
        [{'$set': {ITEM_FIELD: {'$mergeObjects': [
            f'${DETACHED_FIELD}', {'projectId': projectId, 'lock': None, 'updated': _now()}]}}},
         {'$unset': [DETACHED_FIELD, f'{ITEM_FIELD}.detached', f'{ITEM_FIELD}.detachedFrom']}],
        projection={f'{ITEM_FIELD}.state': 1}, return_document=True)
    return doc[ITEM_FIELD]['state'] if doc else None


def reassign(itemId, old: dict, projectId) -> bool:
    """Move a scan's state (``old``, as read) to another project; False if it changed since."""
    return bool(Item().collection.update_one(
        {'_id': itemId, f'{ITEM_FIELD}.projectId': old['projectId'],
         f'{ITEM_FIELD}.state': old['state']},
        {'$set': {f'{ITEM_FIELD}.projectId': projectId, f'{ITEM_FIELD}.lock': None,
                  f'{ITEM_FIELD}.updated': _now()}}).modified_count)


def detach(itemId, old: dict) -> bool:
    """Take a scan (state ``old``, as read) out of its project, keeping its state aside."""
    now = _now()
    return bool(Item().collection.update_one(
        {'_id': itemId, f'{ITEM_FIELD}.projectId': old['projectId'],
         f'{ITEM_FIELD}.state': old['state']},
        [{'$set': {DETACHED_FIELD: {'$mergeObjects': [
            f'${ITEM_FIELD}', {'lock': None, 'detached': now, 'updated': now,
                               'detachedFrom': f'${ITEM_FIELD}.projectId'}]}}},
         {'$unset': ITEM_FIELD}]).modified_count)


def pending_state(item: dict, project: dict) -> dict:
    """The review state ``ensure_scan`` would give an item, computed without storing it (what a
    GET answers for an image not registered yet): its kept state if it was detached, else that
    of a new, unreviewed scan."""
    if item.get(ITEM_FIELD):
        return item[ITEM_FIELD]
    kept = item.get(DETACHED_FIELD)
    if kept:
        state = {k: v for k, v in kept.items() if k not in ('detached', 'detachedFrom')}
        return {**state, 'projectId': project['_id'], 'lock': None}
    return initial_state(item, project)


def ensure_scan(item: dict, project: dict) -> dict:
    """Give an item its initial review state if it has none (or its kept state back if it was
    detached); returns the current item."""
    if item.get(ITEM_FIELD):
        return item
    state = reattach(item['_id'], project['_id'])
    if state is not None:
        count_transition(project['_id'], None, state)
    elif Item().collection.update_one(
            {'_id': item['_id'], ITEM_FIELD: {'$exists': False},
             DETACHED_FIELD: {'$exists': False}},
            {'$set': {ITEM_FIELD: initial_state(item, project)}}).modified_count:
        count_transition(project['_id'], None, ReviewState.UNREVIEWED)
    return Item().load(item['_id'], force=True)


def set_assessment_status(item: dict, status: str, reason: str | None = None,
                          jobId=None) -> None:
    """Record where the automatic assessment stands (queued, running, failed ...)."""
    Item().collection.update_one({'_id': item['_id']}, {'$set': {
        f'{ITEM_FIELD}.assessment.status': status,
        f'{ITEM_FIELD}.assessment.reason': reason,
        f'{ITEM_FIELD}.assessment.jobId': jobId,
        f'{ITEM_FIELD}.assessment.updated': _now(),
    }})


def set_assessment_result(item: dict, result: dict) -> None:
    """Store a finished (or failed) assessment from the worker, replacing the previous one.

    A finished one also sets the scan's queue order (lowest quality, then highest artifact
    probability first); a failed one puts the scan among the not yet assessed. Untrained
    outputs are not stored as probabilities (:func:`trained_only`).
    """
    assessment = {**trained_only(result), 'updated': _now()}
    current = Item().collection.find_one({'_id': item['_id']}, {'created': 1, ITEM_FIELD: 1})
    state = (current or {}).get(ITEM_FIELD) or {}
    created = state.get('sort', {}).get('created') or (current or {}).get('created')
    project = _projects().find_one({'_id': state.get('projectId')},
                                   {'settings.outOfScope': 1}) if state else None
    band = ((project or {}).get('settings') or {}).get('outOfScope')
    Item().collection.update_one({'_id': item['_id']}, {'$set': {
        f'{ITEM_FIELD}.assessment': assessment,
        f'{ITEM_FIELD}.sort': sort_fields(assessment, created, band),
    }})
    # handlers.on_assessment_result: its reasons and triage, and its peers' (models/triage.py)
    events.trigger(ASSESSMENT_STORED_EVENT, {'itemId': item['_id']})
