"""The MIQA network: 5 strided conv stages and a fully connected layer with 11 outputs."""

from collections.abc import Sequence

import torch
from monai.networks.nets import Classifier

from .constants import NETWORK_CHANNELS, NUM_OUTPUTS, TILE_SIZE

#: Channels of the five stages when a model does not name its own (``model.json`` "channels").
CHANNELS = NETWORK_CHANNELS
STRIDES = (2, 2, 2, 2, 2)


def network_channels(channels: Sequence[int] | str | None = None) -> tuple[int, ...]:
    """Five positive stage widths from a sequence or a ``"8,16,32,64,128"`` string (None: default).

    Raises ValueError with the reason for anything else, so a bad option or model.json fails
    with one clear line.
    """
    if channels is None or channels == '':
        return CHANNELS
    if isinstance(channels, str):
        channels = channels.split(',')
    try:
        out = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        raise ValueError(f'channels must be {len(STRIDES)} integers, got {channels!r}') from None
    if len(out) != len(STRIDES) or min(out) < 1:
        raise ValueError(f'channels must be {len(STRIDES)} positive integers (one per stage), '
                         f'got {list(out)}')
    return out


def build_network(channels: Sequence[int] | None = None,
                  penalty_outputs: int = 0) -> torch.nn.Module:
    """The reference configuration: MONAI Classifier on one-channel 64^3 tiles.

    Output 0 regresses overall quality (0-10); outputs 1..10 are the indicator logits in
    the order of ``constants.ARTIFACT_KEYS``. ``channels`` sets the width of the five stages.
    ``penalty_outputs`` more outputs regress the quality points each simulated artifact family
    costs (``model.json`` ``penalty_families`` names them).
    """
    return Classifier(
        in_shape=(1, TILE_SIZE, TILE_SIZE, TILE_SIZE),
        classes=NUM_OUTPUTS + int(penalty_outputs),
        channels=network_channels(channels),
        strides=STRIDES,
    )
