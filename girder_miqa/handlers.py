"""The plugin's Girder event handlers, bound in ``girder_miqa.bind_model_handlers``.

A handler only unpacks its event and calls the model function that owns the change (in
``models/``), so every state change stays with its model and can be called without an event.
"""

from girder.api import access
from girder.api.rest import getCurrentUser
from girder.models.item import Item

from . import scheduling
from .models import copies, moves, protocol, review_state, triage

# --------------------------------------------------------------------- Items, folders and files


def on_item_remove(event) -> None:
    """``model.item.remove``: a deleted scan leaves its project's counts."""
    if isinstance(event.info, dict):
        review_state.scan_removed(event.info)


def on_item_save(event) -> None:
    """``model.item.save``: note a change of folder; keep the stored review state."""
    if isinstance(event.info, dict):
        moves.item_saving(event.info)


def on_item_saved(event) -> None:
    """``model.item.save.after``: re-home a moved item (see models/moves.py), and place it in
    its new site's triage group, refreshing the group it left."""
    if isinstance(event.info, dict):
        left = moves.item_saved(event.info)
        if left is not None:
            triage.item_moved(event.info['_id'], *left)


def on_folder_save(event) -> None:
    """``model.folder.save``: note a change of parent."""
    if isinstance(event.info, dict):
        moves.folder_saving(event.info)


def on_folder_saved(event) -> None:
    """``model.folder.save.after``: re-home the scans below a moved folder, and place them
    in their new sites' triage groups."""
    if isinstance(event.info, dict):
        project = moves.folder_saved(event.info)
        if project is not None:
            triage.project_regrouped(project)


def on_file_remove(event) -> None:
    """``model.file.remove``: removing a scan's image file starts its review over (the next
    image file is assessed when the project assesses automatically)."""
    if isinstance(event.info, dict):
        moves.file_removing(event.info, schedule=scheduling.schedule_assessment)


def on_assessment_reset(event) -> None:
    """``miqa.assessment.reset`` (``review_state.restart`` about another image file): cancel the
    scan's pending assessment jobs, which assess a file it is no longer about."""
    review_state.cancel_pending_jobs(event.info['itemId'], scheduling.PENDING_STATUSES)


# -------------------------------------------------------------------------------------- Copies


def on_copy_prepare(event) -> None:
    """``model.item.copy.prepare`` (the copy saved, its files not yet): the copy keeps none of
    the original's review state."""
    if isinstance(event.info, (tuple, list)) and len(event.info) == 2:
        copies.clear_copied_state(event.info[1])


def on_copy_after(event) -> None:
    """``model.item.copy.after`` (its files copied): a copy that lands in a project is a new scan
    of it, registered and assessed as an upload of its image would be; the REST copy returns
    ``event.info``, so it gets the stored state."""
    file = copies.copied_image(event.info)
    if file is None:
        return
    try:
        user = getCurrentUser()
    except Exception:  # outside a request (a folder copy run as a local task)
        user = None
    scheduling.image_uploaded(file, user)  # never raises
    stored = Item().load(event.info['_id'], force=True)
    if stored is not None:
        event.info.update(stored)


# ----------------------------------------------------------- Uploads, job tokens and job updates


def on_data_process(event) -> None:
    """``data.process``: an image upload into a project becomes a scan and is assessed (never
    failing the upload; see ``scheduling.image_uploaded``)."""
    scheduling.image_uploaded(event.info.get('file') or {}, event.info.get('currentUser'))


@access.public
def on_file_get(event) -> None:
    """``rest.get.file/:id.before``: a job token for this file may read its document."""
    document = scheduling.job_file_document(event.info.get('id'))
    if document is not None:
        event.preventDefault().addResponse(document)


@access.public
def on_file_download(event) -> None:
    """``rest.get.file/:id/download.before``: a job token for this file may download it (and
    no other file: it holds no data-read scope)."""
    download = scheduling.job_file_download(event.info.get('id'), event.info.get('params') or {})
    if download is not None:
        event.preventDefault().addResponse(download)


def on_job_update(event) -> None:
    """``jobs.job.update.after``: delete an assessment job's token once the job has ended."""
    scheduling.job_updated(event.info.get('job') or {})


def on_assessment_stored(event) -> None:
    """``rest.put.item/:id/miqa/assessment.after``: keep the model the worker names in the
    assessment it has just stored, as the workers' report of that model."""
    stored = event.info.get('returnVal')
    scheduling.record_assessment_model(stored.get('assessment') if isinstance(stored, dict)
                                       else None)


def on_assessment_result(event) -> None:
    """``miqa.assessment.stored`` (``review_state.set_assessment_result``): recompute the
    reasons and triage of the scan's group and of the group it left (never raises)."""
    triage.assessment_stored(event.info['itemId'])


def on_protocol_check(event) -> None:
    """``miqa.triage.protocol`` (a triage group refresh): answer the group's protocol
    deviations, ``{itemId: [deviation]}``."""
    info = event.info
    event.addResponse(protocol.check_group(info['project'], info['site'], info['scanType'],
                                           info['scans']))
