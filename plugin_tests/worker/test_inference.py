"""The worker's fast way of running the networks gives the outputs of the plain way.

``inference.for_inference`` fuses each residual unit's two strided convolutions into one, and
``Networks(fast=True)`` splits the batches over one-thread streams; both only reorder work.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miqa_worker.assessment import Networks
from miqa_worker.inference import FusedResidualUnit, for_inference, fusable
from miqa_worker.network import build_network


@pytest.fixture(scope='module')
def network():
    torch.manual_seed(3)
    return build_network((4, 8, 8, 16, 16), penalty_outputs=2).eval()


def _tiles(count: int) -> np.ndarray:
    rng = np.random.default_rng(count)
    return rng.random((count, 64, 64, 64), dtype=np.float32)


def test_fused_copy_gives_the_same_outputs_and_leaves_the_original(network):
    fast = for_inference(network)
    fused = [m for m in fast.modules() if isinstance(m, FusedResidualUnit)]
    assert len(fused) == 5  # every strided stage
    assert not any(isinstance(m, FusedResidualUnit) for m in network.modules())
    assert sum(fusable(m) for m in network.modules()) == 5
    tiles = torch.from_numpy(_tiles(3)).unsqueeze(1)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(tiles).numpy(), network(tiles).numpy(), atol=1e-5)
    assert fast.training is False and network.training is False


@pytest.mark.parametrize('count', [1, 4, 13])
def test_streams_give_the_outputs_of_one_pass_in_order(network, count):
    plain = Networks(network, [network], batch_size=4, threads=2)
    fast = Networks(network, [network], batch_size=4, threads=2, fast=True)
    assert fast.streams == 2 and plain.streams == 1
    tiles = _tiles(count)
    expected = plain.predict(tiles)
    got = fast.predict(tiles)
    assert got.shape == (count, 13)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(fast.predict(tiles, fast.members[0]), expected, atol=1e-5)
    # one tile alone is the same as in a batch: nothing mixes tiles
    np.testing.assert_allclose(fast.predict(tiles[-1:]), expected[-1:], atol=1e-5)
