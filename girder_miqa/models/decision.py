"""Review decisions: validation, the tier rules, and the append-only audit trail ``miqa_decision``.

A decision document::

    {
        '_id': ObjectId, 'itemId': ObjectId, 'projectId': ObjectId, 'folderId': ObjectId,
        'userId': ObjectId | None, 'login': str, 'userName': str,   # the reviewer
        'tier': 1 | 2, 'decision': 'good' | 'questionable' | 'bad',
        'previousState': str,                # the scan's state before (None for imports)
        'artifacts': {key: 'present' | 'absent'},   # keys not stated are left out
        'acceptedSuggestions': [key],        # present artifacts the reviewer took from the
                                             # model's suggestions (one key), not stated alone
        'comment': str,
        'location': {'ijk': [i, j, k], 'world': [x, y, z]} | None,
        'readKind': 'single' | 'double' | 'gold',   # how the read was drawn (models/calibration)
        'assessmentHidden': bool,            # the reviewer was not shown the model's assessment
        'pending': True,                     # only a double read's first read, until the second
        'doubleRead': {'firstId' | 'secondId', 'agree'},   # settled double reads
        'lockAcquired': datetime | None,     # when the reviewer's lock was taken (time spent)
        'seconds': float | None,             # time spent on the scan, sent by the client
        'confidence': int | None,            # 1 (unsure) .. 5 (certain)
        'quality': float | None,             # the reviewer's own 0..10 score, if given
        'assessment': {'status', 'model', 'quality', 'artifacts'} | None,  # the model, as it stood
        'created': datetime,
        'seq': int | None,                   # the scan's rev this decision produced (None: import)
        'source': 'review' | 'import',
        'importKey': str,                    # imports only: makes re-imports idempotent
        'reviewerClaimed': str,              # imports only: the reviewer the file names (text)
        'importedBy': {'userId', 'login'},   # imports only: who imported it
        'imported': datetime,                # imports only: when
        'importedAssessment': {'unverified': True, 'snapshot': {...}} | None,  # imports only:
                                             # the file's model snapshot, never the model's own
        'fileId': ObjectId | None,           # the image file judged (the item's current one)
        'file': {'_id', 'name', 'size', 'sha512', 'created'} | None,
        'superseded': True,                  # only once the review started over (new file,
        'supersededReason': str, 'supersededAt': datetime,  # removed file, moved): history
    }

An import takes on a Girder account (its ``userId``, counted as its work) only when a site admin
imports (or the named account is the importer's own); otherwise ``userId`` is None and ``login``
is the claimed name marked "(unverified)".
"""

import datetime
import hashlib
import json

from bson import ObjectId
from girder.exceptions import RestException, ValidationException
from girder.models.item import Item
from girder.models.model_base import Model

from ..constants import DECISION_COLLECTION, ITEM_FIELD, ReviewState
from ..exceptions import ConflictException
from . import calibration, review_state
from .project import finite

MAX_COMMENT = 10_000
MAX_SECONDS = 7 * 24 * 3600
TIER_DECISIONS = {1: (ReviewState.GOOD, ReviewState.QUESTIONABLE),
                  2: (ReviewState.GOOD, ReviewState.BAD)}
PRESENT, ABSENT = 'present', 'absent'
NOT_STATED_VALUES = (None, '', 'not_stated', 'unstated', 'not stated')
BAD_RULE = ('A scan can be marked bad only if at least one artifact is marked present or a '
            'comment explains a problem the artifact vocabulary does not cover.')
MAX_RETRIES = 50


def _now() -> datetime.datetime:
    """Now, to the millisecond (what MongoDB keeps, so returned and stored times agree)."""
    now = review_state._now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def user_display(user: dict) -> str:
    """A reviewer's name for people."""
    name = f'{user.get("firstName", "")} {user.get("lastName", "")}'.strip()
    return name or user.get('login', '')


def normalize_artifacts(value, vocabulary: list[dict]) -> dict[str, str]:
    """``{key: present|absent}`` from a dict of key -> present/absent/not stated (or booleans), or
    a list of present keys; unknown keys and values are a ValidationException."""
    keys = [a['key'] for a in vocabulary]
    if value is None:
        return {}
    if isinstance(value, list):
        value = {key: PRESENT for key in value}
    if not isinstance(value, dict):
        raise ValidationException(
            'artifacts must be an object {key: "present" | "absent" | "not_stated"}.',
            'artifacts')
    out = {}
    for key, state in value.items():
        if key not in keys:
            raise ValidationException(
                f'Unknown artifact {key!r}; this project\'s artifacts are: {", ".join(keys)}.',
                'artifacts')
        if isinstance(state, str):
            state = state.strip().lower()
        if state in (PRESENT, True, 'true', 'yes', '1'):
            out[key] = PRESENT
        elif state in (ABSENT, False, 'false', 'no', '0'):
            out[key] = ABSENT
        elif state in NOT_STATED_VALUES:
            continue
        else:
            raise ValidationException(
                f'Artifact {key!r} must be "present", "absent" or "not_stated", not {state!r}.',
                'artifacts')
    return out


def _vector(value, field: str, integer: bool) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            finite(v) for v in value):
        raise ValidationException(f'location.{field} must be three numbers.', 'location')
    if integer:
        if not all(float(v).is_integer() and v >= 0 for v in value):
            raise ValidationException(
                f'location.{field} must be three non-negative voxel indices.', 'location')
        return [int(v) for v in value]
    return [float(v) for v in value]


def normalize_location(value) -> dict | None:
    """A location of interest: voxel indices ``ijk`` and/or world coordinates ``world`` (mm)."""
    if value in (None, {}):
        return None
    if not isinstance(value, dict) or not set(value) <= {'ijk', 'world'}:
        raise ValidationException(
            'location must be an object with "ijk" (voxel indices) and/or "world" (mm).',
            'location')
    out = {}
    if value.get('ijk') is not None:
        out['ijk'] = _vector(value['ijk'], 'ijk', True)
    if value.get('world') is not None:
        out['world'] = _vector(value['world'], 'world', False)
    return out or None


def normalize_accepted(value, artifacts: dict[str, str]) -> list[str]:
    """``acceptedSuggestions``: distinct artifact keys, each one of the decision's present
    artifacts (which of them the reviewer accepted from the model's suggestions)."""
    if value is None:
        return []
    if isinstance(value, str):  # a CSV cell: keys separated by spaces or commas
        value = value.replace(',', ' ').split()
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValidationException('acceptedSuggestions must be a list of artifact keys.',
                                  'acceptedSuggestions')
    out = []
    for key in value:
        if artifacts.get(key) != PRESENT:
            raise ValidationException(
                f'acceptedSuggestions names {key!r}, which this decision does not mark present.',
                'acceptedSuggestions')
        if key not in out:
            out.append(key)
    return out


def check_suggested(accepted: list[str], assessment: dict | None) -> None:
    """Each accepted suggestion must be one the scan's current assessment makes (a trained
    indicator at or above the suggestion threshold); else a ValidationException naming it."""
    suggested = review_state.suggested_artifacts(assessment)
    for key in accepted:
        if key not in suggested:
            raise ValidationException(
                f'acceptedSuggestions names {key!r}, which the scan\'s current assessment does '
                f'not suggest (suggested: {", ".join(suggested) or "none"}).',
                'acceptedSuggestions')


def validate_fields(project: dict, tier: int, decision: str, artifacts=None, comment=None,
                    location=None, seconds=None, confidence=None, quality=None,
                    acceptedSuggestions=None) -> dict:
    """Check a decision's content against the project's vocabulary and the workflow rules
    (``acceptedSuggestions`` against its artifacts; :func:`check_suggested` against the model)."""
    if tier not in TIER_DECISIONS:
        raise ValidationException('tier must be 1 or 2.', 'tier')
    if decision not in ReviewState.ALL or decision == ReviewState.UNREVIEWED:
        raise ValidationException(
            f'Unknown decision {decision!r}; use good, questionable (tier 1) or bad (tier 2).',
            'decision')
    if decision not in TIER_DECISIONS[tier]:
        raise ValidationException(
            f'At tier {tier} a scan can be marked {" or ".join(TIER_DECISIONS[tier])}, '
            f'not {decision}.', 'decision')
    artifacts = normalize_artifacts(artifacts, project['settings']['artifacts'])
    if comment is None:
        comment = ''
    if not isinstance(comment, str):
        raise ValidationException('comment must be text.', 'comment')
    if len(comment) > MAX_COMMENT:
        raise ValidationException(
            f'comment is {len(comment)} characters; at most {MAX_COMMENT} are allowed.',
            'comment')
    if decision == ReviewState.BAD and PRESENT not in artifacts.values() and not comment.strip():
        raise ValidationException(BAD_RULE, 'decision')
    if seconds is not None and (not finite(seconds) or not 0 <= seconds <= MAX_SECONDS):
        raise ValidationException(
            f'seconds must be a number from 0 to {MAX_SECONDS}.', 'seconds')
    if confidence is not None and (not finite(confidence) or confidence not in (1, 2, 3, 4, 5)):
        raise ValidationException('confidence must be an integer from 1 to 5.', 'confidence')
    if quality is not None and (not finite(quality) or not 0 <= quality <= 10):
        raise ValidationException('quality must be a number from 0 to 10.', 'quality')
    return {
        'tier': tier, 'decision': decision, 'artifacts': artifacts, 'comment': comment,
        'acceptedSuggestions': normalize_accepted(acceptedSuggestions, artifacts),
        'location': normalize_location(location),
        'seconds': float(seconds) if seconds is not None else None,
        'confidence': int(confidence) if confidence is not None else None,
        'quality': float(quality) if quality is not None else None,
    }


def assessment_snapshot(assessment: dict | None) -> dict | None:
    """The model's assessment as it stands: status, model, quality, artifact probabilities."""
    if not assessment:
        return None
    return {
        'status': assessment.get('status'),
        'model': assessment.get('model'),
        'quality': assessment.get('quality'),
        'artifacts': review_state.trained_probabilities(assessment) or None,
        'scope': review_state.scope_of(assessment),
    }


def latest_copy(doc: dict) -> dict:
    """What ``item['miqa']['latestDecision']`` keeps of a decision."""
    return {k: v for k, v in doc.items()
            if k not in ('itemId', 'projectId', 'folderId', 'importKey')}


def lock_free_clause(userId, now) -> dict:
    """A query clause: the scan is not locked by anyone but ``userId`` (or the lock expired)."""
    return {'$or': [{f'{ITEM_FIELD}.lock': None},
                    {f'{ITEM_FIELD}.lock.userId': userId},
                    {f'{ITEM_FIELD}.lock.expires': {'$lte': now}}]}


def lock_holder(state: dict, now) -> dict | None:
    """The live lock on a scan, or None when it is free or expired."""
    lock = state.get('lock')
    if lock and lock.get('expires') and lock['expires'] > now:
        return lock
    return None


def derive_state(trail: list[dict]) -> dict:
    """A scan's state fields (``$set`` paths) from its whole trail, oldest first, superseded
    decisions left out, by the rules of live decisions: tier 2 is final (a tier-1 decision dated
    after it, an import's, stays in the trail but does not change the scan), so the newest
    tier-2 decision if there is one, else the newest decision; a pair of double reads that
    disagree, newest and not yet decided at tier 2, leaves the scan questionable."""
    history = [d for d in trail if not d.get('superseded') and not d.get('pending')]
    latest = next((d for d in reversed(history) if d['tier'] == 2), None) or (
        history[-1] if history else None)
    tier1 = next((d for d in reversed(history) if d['tier'] == 1), None)
    state = latest['decision'] if latest else ReviewState.UNREVIEWED
    if latest is not None and latest['tier'] == 1 and len(history) >= 2:
        a, b = history[-2:]
        if a['tier'] == 1 and a.get('readKind') == b.get('readKind') == 'double' and (
                a.get('login') != b.get('login')) and calibration.reads_disagree(a, b):
            state = ReviewState.QUESTIONABLE
    return {
        f'{ITEM_FIELD}.state': state,
        f'{ITEM_FIELD}.latestDecision': latest_copy(latest) if latest else None,
        f'{ITEM_FIELD}.decisionCount': len(history),
        f'{ITEM_FIELD}.tier1': {'decision': state if latest is tier1 else tier1['decision'],
                                'userId': tier1['userId'],
                                'created': tier1['created']} if tier1 else None,
    }


class Decision(Model):
    """The append-only audit trail of review decisions."""

    def initialize(self):
        self.name = DECISION_COLLECTION
        self.ensureIndices([
            ([('itemId', 1), ('created', 1)], {}),
            ([('projectId', 1), ('folderId', 1)], {}),
            ([('itemId', 1), ('importKey', 1)],
             {'unique': True, 'partialFilterExpression': {'importKey': {'$exists': True}}}),
        ])

    def validate(self, doc):
        return doc

    def history(self, item: dict) -> list[dict]:
        """Every decision on a scan, oldest first."""
        return list(self.find({'itemId': item['_id']}, sort=[('created', 1), ('_id', 1)]))

    def record(self, item: dict, project: dict, user: dict, fields: dict) -> dict:
        """Apply a validated decision to a scan atomically and append it to the trail.

        The item is updated only if its ``rev`` is unchanged since it was read and no one else
        holds its lock; a lost race re-reads and re-checks the rules, so concurrent decisions
        are each recorded (or refused with 409), never lost. The decider's lock is released.
        """
        for _ in range(MAX_RETRIES):
            current = Item().collection.find_one(
                {'_id': item['_id']}, {ITEM_FIELD: 1, 'folderId': 1, 'name': 1})
            state = (current or {}).get(ITEM_FIELD)
            if not state:
                raise RestException('This item is not a scan of a MIQA project.')
            now = _now()
            holder = lock_holder(state, now)
            if holder and holder['userId'] != user['_id']:
                raise ConflictException(
                    f'{holder.get("name") or holder.get("login")} ({holder.get("login")}) is '
                    f'reviewing this scan (locked until {holder["expires"].isoformat()}); a '
                    'tier-2 reviewer or an admin may break the lock.')
            latest = state.get('latestDecision') or {}
            if fields['tier'] == 1 and latest.get('tier') == 2:
                raise ConflictException(
                    'This scan was decided at tier 2; only a tier-2 reviewer may change it.')
            check_suggested(fields.get('acceptedSuggestions') or [], state.get('assessment'))
            rev = state.get('rev', 0)
            # the file the reviewer saw: the item's image file now (the one the scan is about)
            judged = review_state.file_ref(review_state.current_image_file(item['_id']))
            if state.get('file') and not review_state.same_file(state['file'], judged):
                # the image changed by a path without upload events (e.g. an assetstore import)
                review_state.restart(item['_id'], 'file_changed', file=judged)
                raise ConflictException(
                    'The scan\'s image file changed since its review began; it starts over as '
                    'unreviewed. Review the current file.')
            doc = {
                'fileId': judged['_id'] if judged else None, 'file': judged,
                '_id': ObjectId(), 'itemId': item['_id'], 'projectId': project['_id'],
                'folderId': current['folderId'], 'userId': user['_id'], 'login': user['login'],
                'userName': user_display(user), 'readKind': 'single',
                'assessmentHidden': False, **fields,
                'previousState': state['state'],
                'assessment': assessment_snapshot(state.get('assessment')),
                'lockAcquired': holder['acquired'] if holder else None,
                'created': now, 'seq': rev + 1, 'source': 'review',
            }
            if fields['tier'] == 1 and state['state'] == ReviewState.UNREVIEWED and (
                    calibration.is_double_read(project, item['_id'])):
                done = self._double_read(item, project, user, state, doc, judged, now)
                if done is not None:
                    return done
                continue
            update = {
                '$set': {f'{ITEM_FIELD}.state': fields['decision'],
                         f'{ITEM_FIELD}.latestDecision': latest_copy(doc),
                         f'{ITEM_FIELD}.lock': None,
                         f'{ITEM_FIELD}.file': judged,
                         f'{ITEM_FIELD}.updated': now},
                '$inc': {f'{ITEM_FIELD}.rev': 1, f'{ITEM_FIELD}.decisionCount': 1},
            }
            if fields['tier'] == 1:
                update['$set'][f'{ITEM_FIELD}.tier1'] = {
                    'decision': fields['decision'], 'userId': user['_id'], 'created': now}
            query = {'_id': item['_id'], f'{ITEM_FIELD}.rev': rev, **lock_free_clause(
                user['_id'], now)}
            if Item().collection.update_one(query, update).modified_count:
                self.collection.insert_one(doc)
                if fields['tier'] == 2:  # tier 2 settles a pair still waiting for its second
                    self.collection.update_many(
                        {'itemId': item['_id'], 'pending': True},
                        {'$unset': {'pending': ''}, '$set': {'doubleRead.settledBy': 'tier2'}})
                review_state.count_transition(project['_id'], state['state'],
                                              fields['decision'])
                return doc
        raise ConflictException('The scan changed too often while recording; try again.')

    def _double_read(self, item: dict, project: dict, user: dict, state: dict, doc: dict,
                     judged: dict | None, now) -> dict | None:
        """Record one read of a double-read scan (``doc``, not stored yet); None when the scan
        changed meanwhile (the caller tries again).

        The first read is stored ``pending`` and leaves the scan unreviewed (the item notes only
        that a read waits); the second, by another reviewer, settles the pair: agreeing reads
        move the scan on, disagreeing ones send it to tier 2 with both reads side by side.
        """
        pending = list(self.collection.find(
            {'itemId': item['_id'], 'pending': True, 'superseded': {'$ne': True}},
            sort=[('created', 1)]))
        if any(p['userId'] == user['_id'] for p in pending):
            raise ConflictException(
                'You have read this scan already; it waits for a second, independent read by '
                'another tier-1 reviewer.')
        rev = state.get('rev', 0)
        query = {'_id': item['_id'], f'{ITEM_FIELD}.rev': rev,
                 **lock_free_clause(user['_id'], now)}
        doc['readKind'] = 'double'
        common = {f'{ITEM_FIELD}.lock': None, f'{ITEM_FIELD}.file': judged,
                  f'{ITEM_FIELD}.updated': now}
        if not pending:  # stored first, so a second reader who sees the new rev finds it
            doc['pending'] = True
            self.collection.insert_one(doc)
            update = {'$set': {**common, f'{ITEM_FIELD}.doubleRead': {'reads': 1}},
                      '$inc': {f'{ITEM_FIELD}.rev': 1}}
            if Item().collection.update_one(query, update).modified_count:
                return doc
            self.collection.delete_one({'_id': doc['_id']})
            return None
        first = pending[0]
        disagree = calibration.reads_disagree(first, doc)
        newState = ReviewState.QUESTIONABLE if disagree else doc['decision']
        doc['doubleRead'] = {'firstId': first['_id'], 'agree': not disagree}
        update = {'$set': {
            **common, f'{ITEM_FIELD}.state': newState,
            f'{ITEM_FIELD}.latestDecision': latest_copy(doc),
            f'{ITEM_FIELD}.tier1': {'decision': newState, 'userId': user['_id'],
                                    'created': now},
            f'{ITEM_FIELD}.doubleRead': {
                'reads': 2, 'agree': not disagree,
                'decisions': [calibration.read_summary(first), calibration.read_summary(doc)]}},
            '$inc': {f'{ITEM_FIELD}.rev': 1, f'{ITEM_FIELD}.decisionCount': 2}}
        if not Item().collection.update_one(query, update).modified_count:
            return None
        self.collection.insert_one(doc)
        self.collection.update_one({'_id': first['_id']}, {
            '$unset': {'pending': ''},
            '$set': {'doubleRead': {'secondId': doc['_id'], 'agree': not disagree}}})
        review_state.count_transition(project['_id'], state['state'], newState)
        return doc

    @staticmethod
    def import_key(fields: dict, claimed: str, created, undated: bool) -> str:
        """What makes a re-import of the same decision recognizable (its content and time)."""
        key_source = {k: fields.get(k) for k in ('tier', 'decision', 'artifacts', 'comment',
                                                 'location', 'seconds', 'confidence', 'quality')}
        if fields.get('acceptedSuggestions'):  # absent before it existed: old keys stay
            key_source['acceptedSuggestions'] = fields['acceptedSuggestions']
        key_source.update(login=claimed, created='' if undated else created.isoformat())
        return hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()

    def import_doc(self, item: dict, project: dict, fields: dict, claimed: str,
                   account: dict | None, login: str, importer: dict,
                   created: datetime.datetime, imported: datetime.datetime,
                   importedAssessment: dict | None = None, undated: bool = False) -> dict:
        """The trail document of an earlier decision brought in by an import (not yet stored).

        ``account`` is the Girder user it is attributed to (only when the import may do so),
        ``claimed`` the reviewer the file names; an undated decision gets the import's time.
        """
        return {
            '_id': ObjectId(), 'itemId': item['_id'], 'projectId': project['_id'],
            'folderId': item['folderId'], 'userId': account['_id'] if account else None,
            'login': login, 'userName': user_display(account) if account else claimed,
            **fields, 'previousState': None, 'assessment': None,
            'importedAssessment': importedAssessment,
            'created': created, 'seq': None, 'source': 'import',
            'importKey': self.import_key(fields, claimed, created, undated),
            'reviewerClaimed': claimed,
            'importedBy': {'userId': importer['_id'], 'login': importer['login']},
            'imported': imported,
        }

    def rebuild_state(self, item: dict) -> dict:
        """Recompute a scan's state, latest decision and count from its full trail (imports): the
        newest tier-2 decision if there is one, else the newest decision."""
        for _ in range(MAX_RETRIES):
            current = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1})
            state = current[ITEM_FIELD]
            derived = derive_state(self.history(item))
            newState = derived[f'{ITEM_FIELD}.state']
            update = {'$set': {**derived, f'{ITEM_FIELD}.updated': _now()},
                      '$inc': {f'{ITEM_FIELD}.rev': 1}}
            if Item().collection.update_one(
                    {'_id': item['_id'], f'{ITEM_FIELD}.rev': state.get('rev', 0)},
                    update).modified_count:
                review_state.count_transition(state['projectId'], state['state'], newState)
                return Item().load(item['_id'], force=True)
        raise ConflictException('The scan changed too often while importing; try again.')
