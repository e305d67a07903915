import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist.evaluation import npops


def test_vertical_edge_filter_lesson():
    # dark left half, light right half: the filter fires only on the boundary columns
    img = np.zeros((6, 6), np.float32)
    img[:, 3:] = 1.0
    out = npops.conv2d(img, npops.VERTICAL_EDGE)
    assert out.shape == (4, 4)
    np.testing.assert_array_equal(out, np.array([[0, 3, 3, 0]] * 4, np.float32))
    expected = F.conv2d(torch.from_numpy(img)[None, None], torch.from_numpy(npops.VERTICAL_EDGE)[None, None])
    np.testing.assert_allclose(out, expected[0, 0].numpy())


def test_max_pool_lesson():
    region = np.array([[0.2, 0.8], [0.5, 0.3]], np.float32)
    assert npops.max_pool2d(region).item() == pytest.approx(0.8)


def test_relu_lesson():
    np.testing.assert_array_equal(npops.relu(np.array([-0.32, 0.45])), np.array([0.0, 0.45]))


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv2d_matches_torch(stride, padding):
    rng = np.random.default_rng(stride * 10 + padding)
    x = rng.standard_normal((3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    ours = npops.conv2d(x, w, b, stride=stride, padding=padding)
    ref = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=padding)
    np.testing.assert_allclose(ours, ref[0].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(8, 28, 28), (4, 7, 7), (13, 13)])
def test_relu_and_maxpool_match_torch(size):
    x = np.random.default_rng(0).standard_normal(size).astype(np.float32)
    np.testing.assert_array_equal(npops.relu(x), F.relu(torch.from_numpy(x)).numpy())
    t = torch.from_numpy(x)
    ref = F.max_pool2d(t[None] if t.ndim == 2 else t, 2)
    np.testing.assert_array_equal(npops.max_pool2d(x, 2), ref[0].numpy() if t.ndim == 2 else ref.numpy())


def test_channel_mismatch_is_clear():
    with pytest.raises(ValueError, match="expects 2 input channels, image has 1"):
        npops.conv2d(np.zeros((1, 5, 5)), np.zeros((1, 2, 3, 3)))
