"""Who may do what in a MIQA project: read it, administer it, review at which tier, break locks,
write an assessment, and which folders' scans a user sees.

A project's access is its root's (folder or collection) Girder access; its reviewers are the
members of its tier groups (site admins are both tiers); its owners have ADMIN access on the root.
The ``require_*`` functions raise ``AccessException`` (HTTP 403) with the rule in words.
"""

from girder.constants import AccessType
from girder.exceptions import AccessException
from girder.models.folder import Folder
from girder.models.group import Group
from girder.models.token import Token

from .models.project import ROOT_MODELS, load_root, root_of


def is_site_admin(user: dict | None) -> bool:
    """Whether the user is a Girder site administrator."""
    return bool(user and user.get('admin'))


def root_access(project: dict, user: dict | None, level: int) -> bool:
    """Whether a user has ``level`` access on the project's folder or collection."""
    rootType, _rootId = root_of(project)
    root = load_root(project)
    return bool(root) and ROOT_MODELS[rootType]().hasAccess(root, user, level)


def can_read(project: dict, user: dict | None) -> bool:
    """Whether the user can read the project (its folder or collection)."""
    return root_access(project, user, AccessType.READ)


def user_tiers(project: dict, user: dict | None) -> list[int]:
    """The tiers a user may decide at in a project (admins: both)."""
    if not user:
        return []
    if is_site_admin(user):
        return [1, 2]
    groups = set(user.get('groups') or [])
    settings = project['settings']
    return [tier for tier, key in ((1, 'tier1GroupId'), (2, 'tier2GroupId'))
            if settings.get(key) is not None and settings[key] in groups]


def can_admin(project: dict, user: dict | None) -> bool:
    """Whether a user may change a project's settings (admins and owners of its root)."""
    if not user:
        return False
    if is_site_admin(user):
        return True
    return root_access(project, user, AccessType.ADMIN)


def readable_folder_ids(user: dict | None, folderIds) -> set:
    """Those of ``folderIds`` the user can read, in one query (admins: all)."""
    folderIds = list(folderIds)
    if is_site_admin(user):
        return set(folderIds)
    query = {'_id': {'$in': folderIds}, **Folder().permissionClauses(user, AccessType.READ)}
    return {doc['_id'] for doc in Folder().find(query, fields=['_id'])}


def can_read_group(group: dict, user: dict | None) -> bool:
    """Whether the user may see a tier group's name (READ access on the group)."""
    return Group().hasAccess(group, user, AccessType.READ)


def require_read(project: dict, user: dict | None) -> None:
    """403 unless the user can read the project's folder or collection."""
    if not can_read(project, user):
        raise AccessException('You do not have read access to this project.')


def require_project_admin(project: dict, user: dict | None) -> None:
    """403 unless the user is an admin or an owner (ADMIN access) of the project's root."""
    if not can_admin(project, user):
        raise AccessException('Only admins and the project\'s owners (admin access on its '
                              'folder or collection) may do this.')


def require_reviewer(project: dict, user: dict | None, tier: int | None = None) -> list[int]:
    """The user's tiers in the project; 403 unless they have one (or the requested one)."""
    tiers = user_tiers(project, user)
    if not tiers:
        raise AccessException(
            'Only members of this project\'s tier-1 or tier-2 reviewer group (or admins) may '
            'review its scans.')
    if tier is not None and tier not in tiers:
        raise AccessException(f'You are not a tier-{tier} reviewer in this project.')
    return tiers


def may_break_locks(tiers: list[int]) -> bool:
    """Whether a reviewer with these tiers may break or release someone else's lock (tier 2)."""
    return 2 in tiers


def require_lock_breaker(tiers: list[int]) -> None:
    """403 unless the reviewer may break locks."""
    if not may_break_locks(tiers):
        raise AccessException('Only tier-2 reviewers and admins may break a lock.')


def require_assessor(project: dict, user: dict | None) -> None:
    """403 unless the user may schedule a scan's assessment (its reviewers and owners)."""
    if not can_admin(project, user):
        require_reviewer(project, user)


def require_assessment_writer(user: dict | None, token: dict | None, scope: str) -> None:
    """403 unless the request is an admin's or carries the job token of this scan (``scope``)."""
    if not (is_site_admin(user) or bool(token and Token().hasScope(token, scope))):
        raise AccessException('Only the job that assesses this scan, or an admin, may write it.')


def may_attribute_import(importer: dict, account: dict | None) -> bool:
    """Whether an import may credit a decision to a Girder account: a site admin's import, or
    the importer's own account."""
    return bool(account) and (is_site_admin(importer) or account['_id'] == importer['_id'])


def may_import_server_files(user: dict | None) -> bool:
    """Whether the user may import files from the server's filesystem (site admins)."""
    return is_site_admin(user)
