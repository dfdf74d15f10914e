"""Names of the model and the worker tasks (no torch here). The server keeps its own copy of
the review vocabulary and the image endings in ``girder_miqa.constants``, since neither package
may import the other; ``test_server_and_worker_agree_on_names`` keeps the two equal."""

# The ten artifact indicators, in the order of the network's outputs 1..10. The keys are the
# review vocabulary's default keys; the labels are what people see.
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

TILE_SIZE = 64
#: Channels of the network's five stages when a model does not name its own.
NETWORK_CHANNELS: tuple[int, ...] = (4, 8, 16, 32, 64)
#: The intensity percentiles a volume's range is taken from (mapped to 0 and 1).
INTENSITY_PERCENTILES: tuple[float, float] = (0.5, 99.5)
NUM_OUTPUTS = 1 + len(ARTIFACTS)  # overall quality (0-10) + ten indicator logits
QUALITY_MIN, QUALITY_MAX = 0.0, 10.0

# File name endings the pipeline treats as images (lower case). A zipped DICOM series is '.zip'.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    '.nii', '.nii.gz', '.nrrd', '.nhdr', '.mha', '.mhd', '.mgz', '.mgh', '.zip',
)

DEFAULT_MODEL = 'miqa-default'


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image endings the pipeline reads."""
    lower = name.lower()
    return any(lower.endswith(ext) for ext in IMAGE_EXTENSIONS)
