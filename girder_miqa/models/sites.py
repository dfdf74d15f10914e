"""Sites and scan types: the groups within which scans are compared (issue #22).

A scan's *site* is a folder on its path: the folder ``siteLevel`` levels below the project root
(the project setting, default 1: the root's direct subfolders are the sites, as in
``project/site-a/subject-1/scan.nii.gz``). Level 0 makes the whole project one site, named after
its root; an item shallower than the level gets the deepest folder it has. A scan's *type* is
its contrast (the assessment's scope, else the acquisition's ``SeriesDescription``), so a T1w of
site-a is compared with the other T1w scans of site-a.
"""

from girder.models.collection import Collection
from girder.models.folder import Folder

from ..constants import ITEM_FIELD

SITE_LEVEL_DEFAULT = 1
SITE_LEVEL_MAX = 32  # deeper than any sane layout; keeps a typo from meaning "the item's folder"
UNKNOWN = 'unknown'


def site_level(project: dict) -> int:
    """The project's ``siteLevel`` setting (projects from before it have the default)."""
    level = (project.get('settings') or {}).get('siteLevel', SITE_LEVEL_DEFAULT)
    return level if isinstance(level, int) and not isinstance(level, bool) else SITE_LEVEL_DEFAULT


def validate_site_level(value) -> int:
    """A ``siteLevel`` setting: an integer from 0 to SITE_LEVEL_MAX; ValueError with a one-line
    message otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SITE_LEVEL_MAX:
        raise ValueError(
            f'siteLevel must be an integer from 0 (the whole project is one site) to '
            f'{SITE_LEVEL_MAX} (how many folders below the project root the site folder is), '
            f'not {value!r}.')
    return value


def folder_path(item: dict, project: dict, cache: dict | None = None) -> list[str]:
    """The names of the folders from the project root (included, a folder or collection) down
    to the item's folder. ``cache`` (folder id -> document) saves lookups across many items of
    one project; it is filled as the walk goes."""
    cache = {} if cache is None else cache
    rootId = project.get('rootId', project['_id'])
    names: list[str] = []
    folderId, seen = item.get('folderId'), set()
    while folderId is not None and folderId not in seen:
        seen.add(folderId)
        if folderId not in cache:
            cache[folderId] = Folder().load(folderId, force=True, fields=[
                'name', 'parentId', 'parentCollection'])
        folder = cache[folderId]
        if not folder:
            break
        names.append(folder['name'])
        if folder['_id'] == rootId:
            return names[::-1]
        if folder.get('parentCollection') != 'folder':
            if folder.get('parentId') == rootId:  # a collection project's top-level folder
                key = ('collection', rootId)
                if key not in cache:
                    cache[key] = Collection().load(rootId, force=True, fields=['name'])
                root = cache[key]
                names.append(root['name'] if root else project.get('name', ''))
                return names[::-1]
            break
        folderId = folder.get('parentId')
    # The root was not on the path (a moved item mid-flight): the path as far as it went,
    # under the project's name.
    return [project.get('name', '')] + names[::-1]


def site_of(item: dict, project: dict, folder_path: list[str] | None = None) -> str:
    """The name of the scan's site: the folder ``siteLevel`` levels below the project root on
    its path (0: the root's name; a shallow item: its deepest folder).

    Args:
        item: the item document (only ``folderId`` is read, unless ``folder_path`` is given).
        project: the project document (its ``settings.siteLevel`` and root).
        folder_path: the folder names from the project root (included) to the item's folder,
            when the caller has them (see :func:`folder_path`); looked up otherwise.
    """
    path = folder_path if folder_path is not None else _folder_path(item, project)
    if not path:
        return project.get('name', '') or UNKNOWN
    return path[min(site_level(project), len(path) - 1)]


_folder_path = folder_path  # site_of's argument shadows the function's name


def scan_type(state: dict) -> str:
    """The scan's type: the contrast the assessment's scope found (when known), else the
    acquisition's ``SeriesDescription``, else "unknown".

    Args:
        state: ``item['miqa']`` (the item itself is accepted too).
    """
    if ITEM_FIELD in state and isinstance(state.get(ITEM_FIELD), dict):
        state = state[ITEM_FIELD]
    assessment = (state or {}).get('assessment') or {}
    scope = assessment.get('scope')
    contrast = scope.get('contrast') if isinstance(scope, dict) else None
    if isinstance(contrast, str) and contrast.strip() and contrast.strip().lower() != UNKNOWN:
        return contrast.strip()
    acquisition = assessment.get('acquisition')
    parameters = acquisition.get('parameters') if isinstance(acquisition, dict) else None
    description = (parameters or {}).get('SeriesDescription')
    if isinstance(description, str) and description.strip():
        return description.strip()
    return UNKNOWN
