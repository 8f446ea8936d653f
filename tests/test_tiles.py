"""Tiles with gap and jitter, and maximal-Hamming permutation sets."""

import itertools
import math

import pytest
import torch

from skssl._tiles import grid_tiles, max_hamming_permutations


def _coordinate_images(b=2, h=12, w=12):
    """Channel 0 holds the row index, channel 1 the column index of each pixel."""
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(b, h, w)
    return torch.stack([rows, cols], dim=1)


def test_centred_tiles_are_row_major_crops_with_gap():
    x = _coordinate_images(h=12, w=12)  # cells of 4 px, tiles of 3 px
    tiles = grid_tiles(x, grid=3, gap=0.25, jitter=False)
    assert tiles.shape == (2, 9, 2, 3, 3)
    for k in range(9):
        top, left = (k // 3) * 4, (k % 3) * 4  # slack 1 -> centred offset 0
        assert torch.equal(tiles[0, k, 0, :, 0], torch.arange(top, top + 3.0))
        assert torch.equal(tiles[0, k, 1, 0, :], torch.arange(left, left + 3.0))


def test_jittered_tiles_stay_inside_their_cell_and_vary_per_sample_and_tile():
    x = _coordinate_images(b=64, h=30, w=30)  # cells of 10, tiles of 5: slack 5
    g = torch.Generator().manual_seed(0)
    tiles = grid_tiles(x, grid=3, gap=0.5, generator=g)
    assert tiles.shape == (64, 9, 2, 5, 5)
    top, left = tiles[:, :, 0, 0, 0], tiles[:, :, 1, 0, 0]
    cell = torch.arange(9)
    off_y, off_x = top - (cell // 3) * 10, left - (cell % 3) * 10
    assert off_y.min() >= 0 and off_y.max() <= 5 and off_x.min() >= 0 and off_x.max() <= 5
    assert len(torch.unique(off_y)) == 6  # every offset 0..5 is drawn
    assert not torch.equal(off_y[0], off_y[1])  # per sample
    assert len(torch.unique(off_x[0])) > 1  # per tile
    # each tile is a contiguous crop of the image
    assert torch.equal(tiles[:, :, 0, :, 0] - top[..., None], torch.arange(5.0).expand(64, 9, 5))


def test_jitter_is_reproducible_from_the_generator():
    x = torch.rand(4, 3, 24, 24)
    a = grid_tiles(x, generator=torch.Generator().manual_seed(3))
    b = grid_tiles(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_too_small_images_raise():
    with pytest.raises(ValueError, match="too small"):
        grid_tiles(torch.rand(1, 1, 2, 2), grid=3)
    with pytest.raises(ValueError, match="gap"):
        grid_tiles(torch.rand(1, 1, 9, 9), gap=1.0)


def _distances(p):
    """Off-diagonal pairwise Hamming distances."""
    d = (p[:, None] != p[None]).sum(-1)
    return d[~torch.eye(len(p), dtype=torch.bool)]


@pytest.mark.parametrize("n, n_tiles, min_distance", [(64, 9, 7), (100, 9, 6), (24, 4, 1), (4, 4, 4)])
def test_min_selection_is_distinct_valid_and_far_apart(n, n_tiles, min_distance):
    perms = max_hamming_permutations(n, n_tiles, seed=0, selection="min")
    assert perms.shape == (n, n_tiles) and perms.dtype == torch.long
    assert torch.equal(perms.sort(dim=1).values, torch.arange(n_tiles).expand(n, n_tiles))
    distance = (perms[:, None] != perms[None]).sum(-1) + n_tiles * torch.eye(n, dtype=torch.long)
    assert distance.min() >= min_distance


@pytest.mark.parametrize("n, n_tiles", [(64, 9), (100, 9), (30, 9), (12, 5)])
def test_mean_selection_is_distinct_valid_and_on_average_farther_than_min(n, n_tiles):
    mean, least = (max_hamming_permutations(n, n_tiles, seed=0, selection=s) for s in ("mean", "min"))
    assert torch.equal(mean.sort(dim=1).values, torch.arange(n_tiles).expand(n, n_tiles))
    assert len(torch.unique(mean, dim=0)) == n
    assert _distances(mean).float().mean() >= _distances(least).float().mean()
    assert _distances(mean).min() <= _distances(least).min()  # the price: closer pairs


def test_mean_selection_is_algorithm_1_of_noroozi_and_favaro():
    # Every added permutation has the largest summed Hamming distance to those before it
    # among all the others (4 tiles: every permutation is a candidate).
    perms = max_hamming_permutations(10, 4, seed=3, selection="mean")
    every = torch.tensor(list(itertools.permutations(range(4))))
    for i in range(1, len(perms)):
        summed = (every[:, None] != perms[None, :i]).sum((1, 2))
        taken = (every[:, None] == perms[None, :i]).all(-1).any(1)
        best = summed.masked_fill(taken, -1).max()
        assert (perms[i] != perms[:i]).sum() == best


def test_unknown_selection_raises():
    with pytest.raises(ValueError, match="selection"):
        max_hamming_permutations(10, selection="max")


def test_greedy_selection_beats_random_permutations():
    perms = max_hamming_permutations(64, 9, seed=1, selection="min")
    random = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(i)) for i in range(64)])
    def min_dist(p):
        return ((p[:, None] != p[None]).sum(-1) + 9 * torch.eye(len(p), dtype=torch.long)).min()
    assert min_dist(perms) > min_dist(random)


def test_permutations_are_deterministic_in_seed():
    assert torch.equal(max_hamming_permutations(30, seed=5), max_hamming_permutations(30, seed=5))
    assert not torch.equal(max_hamming_permutations(30, seed=5), max_hamming_permutations(30, seed=6))


def test_impossible_permutation_counts_raise():
    with pytest.raises(ValueError, match="n_permutations"):
        max_hamming_permutations(math.factorial(4) + 1, n_tiles=4)
    with pytest.raises(ValueError, match="n_permutations"):
        max_hamming_permutations(0)
