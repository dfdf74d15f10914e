"""girder-miqa: MRI quality assurance inside Girder (the server plugin; never imports torch)."""

from pathlib import Path

from girder import events
from girder.constants import AccessType, TokenScope
from girder.models.item import Item
from girder.plugin import GirderPlugin, getPlugin, registerPluginStaticContent

from . import handlers, scheduling, settings  # noqa: F401 (settings: registers its validators)
from .constants import ASSESSMENT_WRITE_SCOPE, ITEM_FIELD
from .models import calibration, scans
from .models.decision import Decision
from .models.project import Project
from .models.protocol import Protocol
from .models.review_state import ASSESSMENT_RESET_EVENT, ASSESSMENT_STORED_EVENT
from .models.triage import PROTOCOL_CHECK_EVENT
from .rest import calibration as calibration_rest
from .rest import item as item_rest
from .rest import protocol as protocol_rest
from .rest import report as report_rest
from .rest import rules as rules_rest
from .rest.project import MiqaResource

WEB_CLIENT_DIST = Path(__file__).parent / 'web_client' / 'dist'


def bind_model_handlers() -> None:
    """Bind the handlers that keep review state right when Girder's models change items,
    folders and files. The server binds them in ``load``; the girder-worker plugin binds them
    too, because Girder runs folder copies and deletions as tasks in the worker's ``local``
    queue, in that process. Binding again changes nothing (Girder keeps the first of a name)."""
    events.bind('model.item.remove', 'miqa', handlers.on_item_remove)
    # Items and folders moved into, out of or between projects (see models/moves.py).
    events.bind('model.item.save', 'miqa', handlers.on_item_save)
    events.bind('model.item.save.after', 'miqa', handlers.on_item_saved)
    events.bind('model.folder.save', 'miqa', handlers.on_folder_save)
    events.bind('model.folder.save.after', 'miqa', handlers.on_folder_saved)
    # Copies are new scans of the project they land in (see models/copies.py), and a scan
    # whose image file is removed starts over (see models/moves.py).
    events.bind('model.item.copy.prepare', 'miqa', handlers.on_copy_prepare)
    events.bind('model.item.copy.after', 'miqa', handlers.on_copy_after)
    events.bind('model.file.remove', 'miqa', handlers.on_file_remove)
    # A review restarted about another image file: its pending assessment jobs are cancelled.
    events.bind(ASSESSMENT_RESET_EVENT, 'miqa', handlers.on_assessment_reset)


class MiqaPlugin(GirderPlugin):
    DISPLAY_NAME = 'MIQA'

    def load(self, info):
        getPlugin('jobs').load(info)
        getPlugin('worker').load(info)

        TokenScope.describeScope(
            ASSESSMENT_WRITE_SCOPE, 'Write MIQA assessments',
            'Lets a worker job write the automatic assessment of one scan.')
        # The review state is readable in the item's JSON, but only this plugin's endpoints
        # write it: Item's generic update endpoints never touch unknown top-level fields.
        Item().exposeFields(level=AccessType.READ, fields={ITEM_FIELD})

        # The queue and visibility indices on Girder's items, and the plugin's own collections.
        scans.ensure_indices()
        scheduling.ensure_indices()
        Project()
        Decision()
        Protocol()  # the reference protocols' collection, so that no read creates it
        calibration.Gold()  # gold references and their re-reads (issue #23)
        calibration.GoldRead()

        info['apiRoot'].miqa = MiqaResource()
        item_rest.register(info['apiRoot'].item)
        # Girder's own item JSON shows a scan's state as GET /item/{id}/miqa does (calibration).
        events.bind('rest.get.item/:id.after', 'miqa.calibration', item_rest.on_item_json)
        events.bind('rest.get.item.after', 'miqa.calibration', item_rest.on_item_json)
        rules_rest.register(info['apiRoot'].miqa)
        calibration_rest.register(info['apiRoot'].miqa)  # agreement, gold references (#23)
        report_rest.register(info['apiRoot'].miqa)  # the group report (#22)
        # A stored result refreshes its group's reasons and triage, which ask the protocol
        # checks for the group's deviations (models/triage.py).
        events.bind(ASSESSMENT_STORED_EVENT, 'miqa', handlers.on_assessment_result)
        events.bind(PROTOCOL_CHECK_EVENT, 'miqa', handlers.on_protocol_check)
        protocol_rest.register(info['apiRoot'].miqa)  # reference protocols (#22)
        events.bind('data.process', 'miqa', handlers.on_data_process)
        # Job tokens: read only their own file, and are deleted when the job ends.
        events.bind('rest.get.file/:id.before', 'miqa', handlers.on_file_get)
        events.bind('rest.get.file/:id/download.before', 'miqa', handlers.on_file_download)
        events.bind('jobs.job.update.after', 'miqa', handlers.on_job_update)
        # The model a worker names in each assessment it stores: the server's model report.
        events.bind('rest.put.item/:id/miqa/assessment.after', 'miqa',
                    handlers.on_assessment_stored)
        bind_model_handlers()

        if (WEB_CLIENT_DIST / 'girder-plugin-miqa.umd.cjs').exists():
            registerPluginStaticContent(
                plugin='miqa',
                css=['/style.css'],
                js=['/girder-plugin-miqa.umd.cjs'],
                staticDir=WEB_CLIENT_DIST,
                tree=info['serverRoot'],
            )
