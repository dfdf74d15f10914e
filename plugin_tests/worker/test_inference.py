"""The worker's fast way of running the networks gives the outputs of the plain way.

``inference.for_inference`` fuses each residual unit's two strided convolutions into one, and
``Networks(fast=True)`` splits the batches over one-thread streams; both only reorder work.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miqa_worker.assessment import Networks, _even_batches
from miqa_worker.inference import (
    Float32Convolution,
    FusedResidualUnit,
    for_inference,
    fusable,
)
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


def test_bfloat16_copy_keeps_its_input_convolution_in_float32(network):
    """For bfloat16 runs the one-channel input convolution is computed in float32 (faster on
    AMX CPUs than oneDNN's one-channel bfloat16 kernels, and closer to the float32 outputs);
    outside autocast the copy is the float32 one to the bit."""
    half = for_inference(network, 'bfloat16')
    wrapped = [m for m in half.modules() if isinstance(m, Float32Convolution)]
    assert len(wrapped) == 1 and wrapped[0].conv.in_channels == 1
    assert not any(isinstance(m, Float32Convolution) for m in for_inference(network).modules())
    tiles = torch.from_numpy(_tiles(2)).unsqueeze(1)
    with torch.inference_mode():
        exact = for_inference(network)(tiles)
        np.testing.assert_array_equal(half(tiles).numpy(), exact.numpy())
        with torch.autocast('cpu', torch.bfloat16):
            inner = wrapped[0].conv(tiles)
            assert inner.dtype == torch.bfloat16  # autocast alone would run it in bfloat16
            out = wrapped[0](tiles)
            assert out.dtype == torch.bfloat16
            mixed = half(tiles).float()
            plain = for_inference(network)(tiles).float()
        with torch.autocast('cpu', enabled=False):
            first = wrapped[0].conv(tiles)
    np.testing.assert_array_equal(out.float().numpy(), first.to(torch.bfloat16).float().numpy())
    error_mixed = (mixed - exact).abs().max().item()
    assert error_mixed < 0.1 and error_mixed <= (plain - exact).abs().max().item() * 1.5


@pytest.mark.parametrize('count', [1, 4, 13, 17])
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


@pytest.mark.parametrize(('start', 'stop', 'count', 'sizes'), [
    (0, 24, 2, [12, 12]), (24, 48, 2, [12, 12]), (0, 7, 2, [3, 4]), (3, 4, 5, [1]),
    (0, 50, 4, [12, 13, 12, 13]), (5, 5, 3, [])])
def test_batches_of_a_stream_cover_its_share_in_sizes_within_one(start, stop, count, sizes):
    batches = _even_batches(start, stop, count)
    assert [b - a for a, b in batches] == sizes
    assert all(b == a for (_, b), (a, _) in zip(batches, batches[1:], strict=False))
    if batches:
        assert batches[0][0] == start and batches[-1][1] == stop


def test_precision_is_chosen_from_the_request_the_environment_and_the_cpu(monkeypatch):
    from miqa_worker.inference import native_bfloat16, resolve_precision

    monkeypatch.delenv('MIQA_PRECISION', raising=False)
    assert resolve_precision('float32', 'cpu') == 'float32'
    assert resolve_precision('bfloat16', 'cpu') == 'bfloat16'
    assert resolve_precision('auto', 'cpu') == ('bfloat16' if native_bfloat16() else 'float32')
    assert resolve_precision(None, 'cuda') == 'float32'  # auto: CUDA keeps float32
    monkeypatch.setenv('MIQA_PRECISION', 'BFloat16 ')
    assert resolve_precision(None, 'cpu') == 'bfloat16'
    assert resolve_precision('float32', 'cpu') == 'float32'  # the caller's choice wins
    monkeypatch.setenv('MIQA_PRECISION', 'half')
    with pytest.raises(ValueError, match="precision 'half' is not one of auto, float32, "
                                         "bfloat16 .MIQA_PRECISION."):
        resolve_precision(None, 'cpu')


def test_bfloat16_passes_stay_close_to_float32_and_say_so(model_path, write_nifti):
    """The worker's bfloat16 passes (the default on a CPU that has bfloat16) move a scan's
    quality and probabilities by little, and the result names the precision it ran in. Runs
    on any CPU (emulated where not native: slower, the same arithmetic)."""
    from miqa_worker.assessment import Assessor

    from .conftest import head_phantom

    path = write_nifti(head_phantom((96, 100, 80)), 'head.nii.gz')
    single = Assessor(model_path, precision='float32').assess_file(path)
    half = Assessor(model_path, precision='bfloat16').assess_file(path)
    assert single['inference'] == {'device': 'cpu', 'precision': 'float32'}
    assert half['inference'] == {'device': 'cpu', 'precision': 'bfloat16'}
    assert half['quality'] != single['quality']  # it did run in bfloat16
    assert abs(half['quality'] - single['quality']) < 0.05
    assert list(half['artifacts']) == list(single['artifacts'])
    for key, p in single['artifacts'].items():
        assert abs(half['artifacts'][key] - p) < 0.01, key
    np.testing.assert_allclose(half['tileMap']['quality'], single['tileMap']['quality'],
                               atol=0.1)
    assert half['metrics'] == single['metrics']  # the image metrics do not use the network


def test_networks_under_training_run_in_float32_unless_asked(network, monkeypatch):
    monkeypatch.setenv('MIQA_PRECISION', 'bfloat16')
    assert Networks(network).precision == 'float32'  # training evaluation: exact figures
    assert Networks(network, precision='bfloat16').precision == 'bfloat16'
    assert Networks(network, fast=True).precision == 'bfloat16'  # the worker's: as set
