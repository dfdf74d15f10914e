"""The plugin's Girder event handlers, bound in ``girder_miqa.bind_model_handlers``.

A handler only unpacks its event and calls the model function that owns the change (in
``models/``), so every state change stays with its model and can be called without an event.
"""

from girder.api.rest import getCurrentUser

from .models import copies, moves, review_state

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
    """``model.item.save.after``: re-home a moved item (see models/moves.py)."""
    if isinstance(event.info, dict):
        moves.item_saved(event.info)


def on_folder_save(event) -> None:
    """``model.folder.save``: note a change of parent."""
    if isinstance(event.info, dict):
        moves.folder_saving(event.info)


def on_folder_saved(event) -> None:
    """``model.folder.save.after``: re-home the scans below a moved folder."""
    if isinstance(event.info, dict):
        moves.folder_saved(event.info)


def on_file_remove(event) -> None:
    """``model.file.remove``: removing a scan's image file starts its review over."""
    if isinstance(event.info, dict):
        moves.file_removing(event.info)


# -------------------------------------------------------------------------------------- Copies


def on_copy_prepare(event) -> None:
    """``model.item.copy.prepare`` (the copy saved, its files not yet): the copy keeps none of
    the original's review state."""
    if isinstance(event.info, (tuple, list)) and len(event.info) == 2:
        copies.clear_copied_state(event.info[1])


def on_copy_after(event) -> None:
    """``model.item.copy.after``: register the copy as a new scan of the project it is in; the
    REST copy returns ``event.info``, so it gets the stored state."""
    try:
        user = getCurrentUser()
    except Exception:  # outside a request (a folder copy run as a local task)
        user = None
    stored = copies.register_copy(event.info, user)
    if stored is not None:
        event.info.update(stored)
