"""Constants of the MIQA Girder plugin: review states, tiers, token scopes and defaults."""

# The review vocabulary: the artifacts a reviewer can mark, the default of a project's
# ``artifacts`` setting. The server owns it (it imports no model code); the worker's model
# reports its own outputs under the same keys, in this order.
ARTIFACTS: tuple[tuple[str, str], ...] = (
    ('normal_variant', 'normal anatomical variant'),
    ('lesion', 'lesion'),
    ('incomplete_coverage', 'incomplete brain coverage'),
    ('misalignment', 'misalignment'),
    ('wraparound', 'wraparound'),
    ('ghosting_motion', 'ghosting/motion'),
    ('inhomogeneity', 'inhomogeneity'),
    ('susceptibility_metal', 'metal susceptibility'),
    ('flow_artifact', 'flow artifact'),
    ('truncation', 'truncation'),
)
ARTIFACT_KEYS: tuple[str, ...] = tuple(key for key, _ in ARTIFACTS)

# File name endings of the uploads that become scans (lower case; '.zip' is a DICOM series):
# those the workers read.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    '.nii', '.nii.gz', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.mgh', '.zip',
)


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image endings (its upload becomes a scan)."""
    lower = name.lower()
    return any(lower.endswith(ext) for ext in IMAGE_EXTENSIONS)


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

ASSESS_TASK_NAME = 'miqa_worker.tasks.assess_scan'
JOB_TYPE = 'miqa.assessment'


class PluginSettings:
    """Keys of the plugin's Girder settings; defaults and validators: girder_miqa.settings."""

    LOCK_SECONDS = 'miqa.lock_seconds'
    SUSPICION_THRESHOLDS = 'miqa.suspicion_thresholds'
    VISIBILITY_CACHE_SECONDS = 'miqa.visibility_cache_seconds'
    MAX_VOXELS = 'miqa.max_voxels'
    DEFAULT_MODEL = 'miqa.default_model'
