"""Constants of the MIQA Girder plugin: review states, tiers, token scopes and defaults."""

from miqa_worker.constants import ARTIFACTS, IMAGE_EXTENSIONS, is_image_name  # noqa: F401


class ReviewState:
    """Where a scan stands in the two-tier workflow."""

    UNREVIEWED = 'unreviewed'
    QUESTIONABLE = 'questionable'
    GOOD = 'good'
    BAD = 'bad'
    ALL = (UNREVIEWED, QUESTIONABLE, GOOD, BAD)


class AssessmentStatus:
    """Where a scan's automatic assessment stands."""

    NOT_SCHEDULED = 'not_scheduled'  # auto-assessment off, or scheduling failed (see reason)
    QUEUED = 'queued'
    RUNNING = 'running'
    DONE = 'done'
    FAILED = 'failed'


# Token scope that lets a worker job write the assessment of one item; the full scope string is
# f'{ASSESSMENT_WRITE_SCOPE}.{itemId}', so a job token cannot write any other scan.
ASSESSMENT_WRITE_SCOPE = 'miqa.assessment.write'

# Collections
PROJECT_COLLECTION = 'miqa_project'
DECISION_COLLECTION = 'miqa_decision'

# The Girder item field that holds the review state (read-only to the generic item endpoints).
ITEM_FIELD = 'miqa'

DEFAULT_MODEL = 'miqa-default'
ASSESS_TASK_NAME = 'miqa_worker.tasks.assess_scan'
JOB_TYPE = 'miqa.assessment'


class PluginSettings:
    """Keys of the plugin's Girder settings; defaults and validators: girder_miqa.settings."""

    LOCK_SECONDS = 'miqa.lock_seconds'
    SUSPICION_THRESHOLDS = 'miqa.suspicion_thresholds'
    VISIBILITY_CACHE_SECONDS = 'miqa.visibility_cache_seconds'
    MAX_VOXELS = 'miqa.max_voxels'
    DEFAULT_MODEL = 'miqa.default_model'
