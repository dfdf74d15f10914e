"""``GET /miqa/rules``: the review rules the web client applies, read from the server's own
constants so that the client holds no copy of them."""

from girder.api import access
from girder.api.describe import Description, autoDescribeRoute

from .. import settings
from ..constants import ARTIFACTS, IMAGE_EXTENSIONS
from ..models.decision import BAD_RULE, TIER_DECISIONS
from ..models.review_state import LEGACY_TRAINED
from ..models.scans import TIER_STATES

# The bad rule in a line, for the review form (BAD_RULE is the full sentence).
BAD_RULE_SUMMARY = 'Bad needs at least one artifact marked present, or a comment.'


def rules() -> dict:
    """The rules as JSON: what each tier may decide, which state each tier reviews, what a bad
    decision needs, the default artifact vocabulary, the file endings read as images, and
    which of the model's outputs the review page may suggest."""
    return {
        'tiers': {
            str(tier): {'decisions': list(decisions), 'reviews': TIER_STATES[tier]}
            for tier, decisions in TIER_DECISIONS.items()
        },
        'badRule': {
            'decision': 'bad',
            'needsOneOf': ['artifactPresent', 'comment'],
            'summary': BAD_RULE_SUMMARY,
            'description': BAD_RULE,
        },
        'artifacts': [{'key': key, 'label': label} for key, label in ARTIFACTS],
        'imageExtensions': list(IMAGE_EXTENSIONS),
        # a trained indicator at or above it is a suggestion (miqa.suspicion_thresholds)
        'suggestionThreshold': settings.suspicion_thresholds()[1],
        'legacyTrained': list(LEGACY_TRAINED),  # an older result's trained indicators
    }


@access.public
@autoDescribeRoute(
    Description('The review rules: tier decisions, the bad rule, artifacts, image file endings.')
    .notes('Read from the server\'s own constants; the web client loads them once instead of '
           'keeping copies. `tiers` maps a tier to the decisions it may record and the state '
           'of the scans it reviews; `badRule.needsOneOf` lists what a bad decision needs (an '
           'artifact marked present, or a comment); `artifacts` is the default vocabulary '
           '(a project may change its own, see its settings); `imageExtensions` are the file '
           'endings read as scans (lower case); `suggestionThreshold`: a trained indicator at '
           'or above it is a suggestion a decision may accept (acceptedSuggestions); '
           '`legacyTrained`: the trained indicators of a result that does not name its '
           'trainedOutputs.')
)
def getRules():
    return rules()


def register(miqaResource) -> None:
    """Add ``GET /miqa/rules`` to the ``/miqa`` resource."""
    miqaResource.route('GET', ('rules',), getRules)
