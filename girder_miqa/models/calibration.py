"""Reviewer calibration (issue #23): blinded double reads, gold-standard re-reads and the
hidden-assessment arm, and what each reviewer may see of them.

Which scans take part is drawn reproducibly: a scan is in an arm when a hash of (the arm, the
project's ``calibrationSeed``, the project id, the item id) read as a number in [0, 1) is below
the arm's share, so reading the settings again never changes a scan's membership, and raising a
share only adds scans. With every share 0 nothing here changes the review.

- **Double reads** (``doubleReadShare``): the first tier-1 read of a drawn scan is kept in the
  trail as ``pending`` (``readKind: 'double'``) and leaves the scan unreviewed; the item keeps
  only that a read is pending (never its content or its reader), so no GET shows it to anyone
  but its author. The second read, by another reviewer, settles both: agreeing reads move the
  scan on as a single read would; disagreeing ones (decision, or an artifact one marked present
  and the other absent) send it to tier 2 (questionable) with both reads in ``doubleRead``.
- **Gold scans**: a project admin stores a reference decision (``miqa_gold``). At ``goldRate``
  (the share of a tier-1 reviewer's queue entries) a reference scan already decided is served
  again, unannounced, shown to that reviewer as unreviewed; the read goes to ``miqa_gold_read``
  and never touches the scan's state, counts or trail. A reviewer is not served a gold scan
  they read within their last ``GOLD_REPEAT_GAP`` entries.
- **Hidden assessment** (``hideAssessmentShare``): tier-1-only reviewers get no automatic
  assessment on drawn scans (state, queue rows, history snapshots); their decisions record
  ``assessmentHidden: true``.
"""

import datetime
import hashlib

from bson import ObjectId
from girder.exceptions import ValidationException
from girder.models.item import Item
from girder.models.model_base import Model

from ..constants import DECISION_COLLECTION, ITEM_FIELD, ReviewState

GOLD_COLLECTION = 'miqa_gold'
GOLD_READ_COLLECTION = 'miqa_gold_read'
GOLD_REPEAT_GAP = 20  # a reviewer's entries between two gold re-reads of the same scan
READ_KINDS = ('single', 'double', 'gold')
ARMS = ('double', 'gold', 'hidden')
SHARE_SETTINGS = {'double': 'doubleReadShare', 'gold': 'goldRate',
                  'hidden': 'hideAssessmentShare'}
PRESENT, ABSENT = 'present', 'absent'


def draw(project: dict, key, arm: str) -> float:
    """A number in [0, 1) fixed by (arm, the project's seed, project id, ``key``)."""
    seed = (project.get('settings') or {}).get('calibrationSeed', 0)
    text = f'miqa-calibration:{arm}:{seed}:{project["_id"]}:{key}'
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / 16 ** 15


def share(project: dict, arm: str) -> float:
    """The project's share for an arm (0 for projects from before the setting existed)."""
    return float((project.get('settings') or {}).get(SHARE_SETTINGS[arm]) or 0.0)


def in_arm(project: dict, itemId, arm: str) -> bool:
    """Whether a scan is drawn into the double-read or hidden-assessment arm."""
    value = share(project, arm)
    return value > 0 and draw(project, itemId, arm) < value


def is_double_read(project: dict, itemId) -> bool:
    """Whether a scan needs two independent tier-1 reads."""
    return in_arm(project, itemId, 'double')


def assessment_hidden(project: dict, itemId, tiers: list[int], admin: bool = False) -> bool:
    """Whether a reviewer with ``tiers`` is kept from the scan's automatic assessment: a
    tier-1-only reviewer (not tier 2, not a project admin) on a scan of the hidden arm."""
    return bool(tiers) and 2 not in tiers and not admin and in_arm(project, itemId, 'hidden')


def reads_disagree(a: dict, b: dict) -> bool:
    """Whether two reads disagree: another decision, or an artifact present in one and absent
    in the other (an artifact one of them did not state is no disagreement)."""
    if a['decision'] != b['decision']:
        return True
    artA, artB = a.get('artifacts') or {}, b.get('artifacts') or {}
    return any({artA.get(k), artB.get(k)} == {PRESENT, ABSENT} for k in set(artA) | set(artB))


def read_summary(doc: dict) -> dict:
    """What ``item['miqa']['doubleRead']['reads']`` shows of a settled read (tier 2 sees both)."""
    return {k: doc.get(k) for k in ('_id', 'userId', 'login', 'userName', 'decision',
                                    'artifacts', 'comment', 'confidence', 'seconds', 'created')}


# ------------------------------------------------------------------------------ what users see

def pending_clause() -> dict:
    """A query clause for the trail's settled decisions (no pending first read of a pair)."""
    return {'pending': {'$ne': True}}


def visible_history(trail: list[dict], user: dict | None, hide_assessment: bool) -> list[dict]:
    """A scan's trail as ``user`` may see it: a pending double read only by its author, and no
    model snapshot when the assessment is hidden from them."""
    uid = (user or {}).get('_id')
    out = []
    for doc in trail:
        if doc.get('pending') and doc.get('userId') != uid:
            continue
        if hide_assessment:
            doc = {**doc, 'assessment': None}
        out.append(doc)
    return out


UNREVIEWED_VIEW = {'state': ReviewState.UNREVIEWED, 'latestDecision': None, 'tier1': None,
                   'decisionCount': 0, 'doubleRead': None}


def hide_assessment(state: dict, project: dict, itemId, tiers: list[int],
                    admin: bool = False) -> dict:
    """A scan's state without its automatic assessment, the model's sort keys and the network's
    reasons when it is in the hidden arm for this reviewer (everything else as stored): what the
    item JSON, the queue, the export and the group report show a tier-1-only reviewer."""
    out = dict(state)
    if assessment_hidden(project, itemId, tiers, admin):
        out['assessment'] = None
        out['assessmentHidden'] = True
        if out.get('sort'):
            out['sort'] = {**out['sort'], 'quality': None, 'artifact': None, 'triage': None}
        if isinstance(out.get('reasons'), list):  # the network's reasons tell what it said
            out['reasons'] = [r for r in out['reasons']
                              if not (isinstance(r, dict) and r.get('source') == 'network')]
    return out


def redact_state(state: dict, project: dict, itemId, user: dict | None, tiers: list[int],
                 admin: bool = False) -> dict:
    """A scan's state as ``user`` may see it: without the assessment and the model's sort keys
    when it is hidden from them; a gold scan as unreviewed to a tier-1-only reviewer (gold
    re-reads are unannounced); never the content of a pending double read (not stored there)."""
    out = hide_assessment(state, project, itemId, tiers, admin)
    tier1_only = bool(tiers) and 2 not in tiers and not admin
    if tier1_only and state.get('gold') and state.get('state') != ReviewState.UNREVIEWED:
        out.update(UNREVIEWED_VIEW)
    if out.get('gold') and not admin:
        out.pop('gold')
    return out


def _trail():
    """The decisions' collection, by name (``decision`` imports this module)."""
    return Item().collection.database[DECISION_COLLECTION]


def my_pending_items(project: dict, user: dict | None) -> list:
    """The scans whose pending double read is this user's (not to be served to them again)."""
    if not user:
        return []
    return _trail().distinct('itemId', {
        'projectId': project['_id'], 'userId': user['_id'], 'pending': True,
        'superseded': {'$ne': True}})


# ---------------------------------------------------------------------------------- gold scans

class Gold(Model):
    """Reference decisions on a project's scans, one per scan (``_id`` = the item's id)."""

    def initialize(self):
        self.name = GOLD_COLLECTION
        self.ensureIndices([([('projectId', 1)], {})])

    def validate(self, doc):
        return doc

    def mark(self, item: dict, project: dict, user: dict, decision: str, artifacts: dict,
             comment: str = '') -> dict:
        """Make a scan a reference with this decision and artifacts (replacing an earlier one)."""
        if decision not in (ReviewState.GOOD, ReviewState.QUESTIONABLE, ReviewState.BAD):
            raise ValidationException(
                'A reference decision is good, questionable or bad.', 'decision')
        doc = {'_id': item['_id'], 'itemId': item['_id'], 'projectId': project['_id'],
               'decision': decision, 'artifacts': artifacts, 'comment': comment or '',
               'userId': user['_id'], 'login': user['login'],
               'created': datetime.datetime.now(datetime.timezone.utc)}
        self.collection.replace_one({'_id': item['_id']}, doc, upsert=True)
        Item().collection.update_one({'_id': item['_id']},
                                     {'$set': {f'{ITEM_FIELD}.gold': True}})
        return doc

    def unmark(self, item: dict) -> bool:
        """Stop a scan being a reference; whether it was one (its gold reads are kept)."""
        Item().collection.update_one({'_id': item['_id']},
                                     {'$unset': {f'{ITEM_FIELD}.gold': ''}})
        return bool(self.collection.delete_one({'_id': item['_id']}).deleted_count)

    def for_project(self, project: dict) -> dict:
        """{itemId: reference} of a project."""
        return {doc['_id']: doc for doc in self.find({'projectId': project['_id']})}


class GoldRead(Model):
    """Tier-1 re-reads of gold scans: never part of a scan's state, counts or trail."""

    def initialize(self):
        self.name = GOLD_READ_COLLECTION
        self.ensureIndices([([('projectId', 1), ('userId', 1), ('created', -1)], {}),
                            ([('itemId', 1)], {})])

    def validate(self, doc):
        return doc

    def record(self, item: dict, project: dict, user: dict, fields: dict, reference: dict,
               extra: dict) -> dict:
        """Store a gold re-read (``fields`` validated like a decision; ``extra``: the reader's
        ``userName`` and what else the trail's decisions record) and release the lock."""
        doc = {'_id': ObjectId(), 'itemId': item['_id'], 'projectId': project['_id'],
               'folderId': item['folderId'], 'userId': user['_id'], 'login': user['login'],
               **fields, **extra, 'readKind': 'gold',
               'reference': {'decision': reference['decision'],
                             'artifacts': reference.get('artifacts') or {}},
               'agrees': not reads_disagree(
                   {'decision': fields['decision'], 'artifacts': fields['artifacts']},
                   {'decision': flag_decision(reference['decision']),
                    'artifacts': reference.get('artifacts') or {}}),
               'created': datetime.datetime.now(datetime.timezone.utc), 'source': 'review'}
        self.collection.insert_one(doc)
        Item().collection.update_one(
            {'_id': item['_id'], f'{ITEM_FIELD}.lock.userId': user['_id']},
            {'$set': {f'{ITEM_FIELD}.lock': None}})
        return doc


def flag_decision(decision: str) -> str:
    """A reference decision as tier 1 would give it (bad is questionable at tier 1)."""
    return ReviewState.QUESTIONABLE if decision == ReviewState.BAD else decision


def recent_entries(project: dict, user: dict) -> list:
    """The items of the user's last ``GOLD_REPEAT_GAP`` entries (decisions and gold reads)."""
    query = {'projectId': project['_id'], 'userId': user['_id']}
    rows = [(d['created'], d['itemId']) for d in _trail().find(
        query, {'created': 1, 'itemId': 1}, sort=[('created', -1)], limit=GOLD_REPEAT_GAP)]
    rows += [(d['created'], d['itemId']) for d in GoldRead().collection.find(
        query, {'created': 1, 'itemId': 1}, sort=[('created', -1)], limit=GOLD_REPEAT_GAP)]
    rows.sort(key=lambda r: _naive(r[0]), reverse=True)
    return [itemId for _created, itemId in rows[:GOLD_REPEAT_GAP]]


def entry_count(project: dict, user: dict) -> int:
    """How many entries (decisions and gold reads) the user has made in the project."""
    query = {'projectId': project['_id'], 'userId': user['_id']}
    return _trail().count_documents(query) + GoldRead().collection.count_documents(query)


def _naive(value):
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def gold_entries(project: dict, user: dict | None, visible: dict, count: int) -> list[dict]:
    """Up to ``count`` decided gold scans to serve ``user`` again, as queue items: each of the
    user's next ``count`` entries is gold when its draw is below ``goldRate``; the scans are
    those outside the user's recent entries, in a per-user reproducible order."""
    rate = share(project, 'gold')
    if not user or rate <= 0 or count <= 0:
        return []
    done = entry_count(project, user)
    wanted = sum(draw(project, f'{user["_id"]}:{done + k}', 'gold') < rate
                 for k in range(count))
    if not wanted:
        return []
    recent = set(recent_entries(project, user))
    refs = [itemId for itemId in Gold().collection.distinct('_id', {'projectId': project['_id']})
            if itemId not in recent]
    if not refs:
        return []
    items = list(Item().collection.find(
        {**visible, '_id': {'$in': refs}, f'{ITEM_FIELD}.state': {'$ne': ReviewState.UNREVIEWED}},
        {'name': 1, 'folderId': 1, 'created': 1, 'size': 1, ITEM_FIELD: 1}))
    items.sort(key=lambda it: draw(project, f'{user["_id"]}:{done}:{it["_id"]}', 'gold-order'))
    return items[:wanted]


def gold_read_pending(state: dict, tier: int) -> bool:
    """Whether a tier-1 decision on a reference scan is a gold re-read: the scan is already
    decided (an unreviewed gold scan is reviewed as any other, and that read is its review)."""
    return tier == 1 and bool(state.get('gold')) and state.get('state') != ReviewState.UNREVIEWED


# ------------------------------------------------------------------------------------ exchange

def import_kinds(entry: dict) -> dict:
    """``readKind`` and ``assessmentHidden`` of an imported decision (defaults: single, false);
    ValueError with the reason for values that are neither."""
    kind = entry.get('readKind')
    kind = (kind.strip().lower() if isinstance(kind, str) else kind) or 'single'
    if kind not in READ_KINDS:
        raise ValueError(f'readKind must be one of {", ".join(READ_KINDS)}, not {kind!r}.')
    hidden = entry.get('assessmentHidden')
    if isinstance(hidden, str):
        hidden = {'true': True, 'false': False, '': None}.get(hidden.strip().lower(), hidden)
    if hidden not in (None, True, False):
        raise ValueError(f'assessmentHidden must be true or false, not {hidden!r}.')
    return {'readKind': kind, 'assessmentHidden': bool(hidden)}


def export_gold(project: dict, admin: bool, itemIds: list) -> dict | None:
    """{itemId: {goldReference, goldReads}} for the JSON export of a project admin (``admin``;
    None for anyone else: gold re-reads are unannounced to reviewers)."""
    if not admin:
        return None
    out: dict = {}
    for doc in Gold().find({'projectId': project['_id'], '_id': {'$in': itemIds}}):
        out.setdefault(doc['_id'], {'goldReference': None, 'goldReads': []})[
            'goldReference'] = {k: v for k, v in doc.items() if k not in ('projectId',)}
    for doc in GoldRead().find({'projectId': project['_id'], 'itemId': {'$in': itemIds}},
                               sort=[('created', 1)]):
        out.setdefault(doc['itemId'], {'goldReference': None, 'goldReads': []})[
            'goldReads'].append({k: v for k, v in doc.items()
                                 if k not in ('itemId', 'projectId', 'folderId')})
    return out


def import_gold(project: dict, importer: dict, rows: list) -> dict:
    """Bring back a JSON export's ``goldReference`` and ``goldReads`` (a project admin's
    import; scans matched by ``itemId`` in this project): references replace the stored ones,
    re-reads already here (same reader, time and decision) are skipped. Returns counts."""
    out = {'references': 0, 'reads': 0, 'readsSkipped': 0, 'unmatched': 0}
    for _line, entry, _decisions in rows:
        ref, reads = entry.get('goldReference'), entry.get('goldReads') or []
        if not isinstance(ref, dict) and not reads:
            continue
        try:
            item = Item().load(ObjectId(str(entry.get('itemId'))), force=True)
        except Exception:
            item = None
        if not item or (item.get(ITEM_FIELD) or {}).get('projectId') != project['_id']:
            out['unmatched'] += 1
            continue
        if isinstance(ref, dict) and ref.get('decision') in (
                ReviewState.GOOD, ReviewState.QUESTIONABLE, ReviewState.BAD):
            Gold().mark(item, project, importer, ref['decision'],
                        {k: v for k, v in (ref.get('artifacts') or {}).items()
                         if v in (PRESENT, ABSENT)}, str(ref.get('comment') or '')[:10_000])
            out['references'] += 1
        for read in reads if isinstance(reads, list) else []:
            if not isinstance(read, dict) or read.get('decision') not in (
                    ReviewState.GOOD, ReviewState.QUESTIONABLE):
                continue
            created = _parse_created(read.get('created'))
            key = hashlib.sha256(f'{read.get("login")}|{created}|{read["decision"]}'.encode(
                )).hexdigest()
            if GoldRead().findOne({'itemId': item['_id'], 'importKey': key}) or (
                    GoldRead().findOne({'itemId': item['_id'], 'login': read.get('login'),
                                        'created': created, 'decision': read['decision']})):
                out['readsSkipped'] += 1
                continue
            keep = ('login', 'userName', 'tier', 'decision', 'artifacts', 'comment', 'seconds',
                    'confidence', 'assessmentHidden', 'reference', 'agrees', 'lockAcquired')
            GoldRead().collection.insert_one({
                **{k: read.get(k) for k in keep}, '_id': ObjectId(), 'itemId': item['_id'],
                'projectId': project['_id'], 'folderId': item['folderId'], 'userId': None,
                'readKind': 'gold', 'created': created or datetime.datetime.now(
                    datetime.timezone.utc), 'source': 'import', 'importKey': key,
                'importedBy': {'userId': importer['_id'], 'login': importer['login']}})
            out['reads'] += 1
    return out


def _parse_created(value):
    """A time from an export (ISO text), naive UTC, or None."""
    if isinstance(value, datetime.datetime):
        return _naive(value)
    try:
        return _naive(datetime.datetime.fromisoformat(str(value).replace('Z', '+00:00')))
    except ValueError:
        return None
