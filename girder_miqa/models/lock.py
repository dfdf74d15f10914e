"""Review locks: who is looking at a scan, expiring after the ``miqa.lock_seconds`` setting.

Locks never block reading; they block other reviewers' locks and decisions (409). Every change is
one conditional update, so two reviewers racing for a scan cannot both get it.
"""

from girder.models.item import Item

from ..constants import ITEM_FIELD
from ..exceptions import ConflictException
from . import review_state
from .decision import lock_free_clause, lock_holder, user_display


def _holder_message(holder: dict) -> str:
    return (f'{holder.get("name") or holder.get("login")} ({holder.get("login")}) is reviewing '
            f'this scan (locked until {holder["expires"].isoformat()}); a tier-2 reviewer or '
            'an admin may break the lock with force=true.')


def acquire(item: dict, user: dict, force: bool = False, may_break: bool = False) -> dict:
    """Take or renew the lock on a scan; returns the scan's state.

    With ``force`` (allowed when ``may_break``), a lock held by someone else is broken.
    """
    now = review_state._now()
    state = item[ITEM_FIELD]
    current = lock_holder(state, now)
    mine = bool(current and current['userId'] == user['_id'])
    lock = {
        'userId': user['_id'], 'login': user['login'], 'name': user_display(user),
        'acquired': current['acquired'] if mine else now,
        'expires': now + review_state.lock_duration(),
    }
    query = {'_id': item['_id'], ITEM_FIELD: {'$exists': True}}
    if not (force and may_break):
        query.update(lock_free_clause(user['_id'], now))
    elif current and not mine:
        lock['broke'] = {'userId': current['userId'], 'login': current.get('login'),
                         'at': now}
    result = Item().collection.find_one_and_update(
        query, {'$set': {f'{ITEM_FIELD}.lock': lock, f'{ITEM_FIELD}.updated': now}},
        projection={ITEM_FIELD: 1}, return_document=True)
    if result is None:
        fresh = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1})
        holder = lock_holder(fresh[ITEM_FIELD], review_state._now()) or current
        if holder is None:  # released in between: try once more
            return acquire({**item, ITEM_FIELD: fresh[ITEM_FIELD]}, user, force, may_break)
        raise ConflictException(_holder_message(holder))
    return result[ITEM_FIELD]


def release(item: dict, user: dict, force: bool = False, may_break: bool = False) -> dict:
    """Give up one's lock (or, with ``force`` when ``may_break``, anyone's); returns the state."""
    now = review_state._now()
    query = {'_id': item['_id'], ITEM_FIELD: {'$exists': True}}
    if not (force and may_break):
        query.update(lock_free_clause(user['_id'], now))
    result = Item().collection.find_one_and_update(
        query, {'$set': {f'{ITEM_FIELD}.lock': None, f'{ITEM_FIELD}.updated': now}},
        projection={ITEM_FIELD: 1}, return_document=True)
    if result is None:
        fresh = Item().collection.find_one({'_id': item['_id']}, {ITEM_FIELD: 1})
        holder = lock_holder(fresh[ITEM_FIELD], review_state._now())
        if holder is None:
            return fresh[ITEM_FIELD]
        raise ConflictException(_holder_message(holder))
    return result[ITEM_FIELD]


def public_state(state: dict) -> dict:
    """The state as the API shows it: an expired lock shows as no lock."""
    if state.get('lock') and not lock_holder(state, review_state._now()):
        state = {**state, 'lock': None}
    return state
