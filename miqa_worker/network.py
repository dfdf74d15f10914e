"""The MIQA network: 5 strided conv stages and a fully connected layer with 11 outputs."""

import torch
from monai.networks.nets import Classifier

from .constants import NUM_OUTPUTS, TILE_SIZE

CHANNELS = (4, 8, 16, 32, 64)
STRIDES = (2, 2, 2, 2, 2)


def build_network() -> torch.nn.Module:
    """The reference configuration: MONAI Classifier on one-channel 64^3 tiles.

    Output 0 regresses overall quality (0-10); outputs 1..10 are the indicator logits in
    the order of ``constants.ARTIFACT_KEYS``.
    """
    return Classifier(
        in_shape=(1, TILE_SIZE, TILE_SIZE, TILE_SIZE),
        classes=NUM_OUTPUTS,
        channels=CHANNELS,
        strides=STRIDES,
    )
