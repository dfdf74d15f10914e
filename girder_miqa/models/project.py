"""A MIQA project: a Girder folder enabled for review, with its settings."""

import datetime

from bson import ObjectId

from girder.exceptions import ValidationException
from girder.models.folder import Folder
from girder.models.model_base import Model

from ..constants import ARTIFACTS, DEFAULT_MODEL, PROJECT_COLLECTION


def default_settings() -> dict:
    """Settings of a new project: no tier groups yet, the default vocabulary, auto-assessment on."""
    return {
        'tier1GroupId': None,
        'tier2GroupId': None,
        'artifacts': [{'key': key, 'label': label} for key, label in ARTIFACTS],
        'autoAssess': True,
        'model': DEFAULT_MODEL,
    }


class Project(Model):
    """One document per enabled folder, in its own collection (``folderId`` is unique)."""

    def initialize(self):
        self.name = PROJECT_COLLECTION
        self.ensureIndices([('folderId', {'unique': True})])

    def validate(self, doc):
        if not isinstance(doc.get('folderId'), ObjectId):
            raise ValidationException('A project needs a folder.', 'folderId')
        return doc

    def createProject(self, folder: dict, creator: dict, settings: dict | None = None) -> dict:
        """Enable a folder for review. Raises ValidationException if it already is one."""
        if self.findOne({'folderId': folder['_id']}):
            raise ValidationException('This folder is already a MIQA project.', 'folderId')
        doc = {
            'folderId': folder['_id'],
            'name': folder['name'],
            'creatorId': creator['_id'] if creator else None,
            'created': datetime.datetime.now(datetime.timezone.utc),
            'settings': {**default_settings(), **(settings or {})},
        }
        return self.save(doc)

    def findForFolder(self, folder: dict) -> dict | None:
        """The nearest project at or above a folder, or None."""
        chain = [folder['_id']]
        for entry in Folder().parentsToRoot(folder, force=True):
            if entry['type'] == 'folder':
                chain.append(entry['object']['_id'])
        found = {p['folderId']: p for p in self.find({'folderId': {'$in': chain}})}
        for folderId in chain:
            if folderId in found:
                return found[folderId]
        return None

    def findForItem(self, item: dict) -> dict | None:
        """The project a scan belongs to, or None."""
        folder = Folder().load(item['folderId'], force=True)
        return self.findForFolder(folder) if folder else None
