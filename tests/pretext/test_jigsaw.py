"""JigsawSSL: scikit-learn contract, puzzle construction, and learning on digits."""

import numpy as np
import pytest
import torch

from skssl._tiles import max_hamming_permutations
from skssl.datasets import load_digits_images
from skssl.pretext.jigsaw import JigsawSSL, shuffle_tiles


def test_shuffle_puts_the_permuted_tile_at_each_position():
    tiles = torch.arange(2 * 9, dtype=torch.float32).view(2, 9, 1, 1, 1)  # tile k of image b holds 9b + k
    perms = max_hamming_permutations(5)
    labels = torch.tensor([3, 1])
    out = shuffle_tiles(tiles, perms, labels)
    assert torch.equal(out[0].flatten(), perms[3].float())
    assert torch.equal(out[1].flatten(), 9 + perms[1].float())


def test_permutation_set_is_a_fitted_buffer():
    X, _ = load_digits_images(return_X_y=True)
    est = JigsawSSL(max_epochs=1, batch_size=32, n_permutations=10, random_state=0).fit(X[:64])
    assert torch.equal(est.networks_["head"].permutations.cpu(), max_hamming_permutations(10, 9))
    assert "head.permutations" in est.networks_.state_dict()


def test_invalid_gap_raises():
    with pytest.raises(ValueError, match="gap"):
        JigsawSSL(gap=1.5).fit(np.random.rand(10, 64))


def test_learns_to_solve_puzzles_of_held_out_digits():
    X, _ = load_digits_images(return_X_y=True)
    est = JigsawSSL(max_epochs=3, batch_size=32, n_permutations=8, random_state=0).fit(X[:256])
    assert est.history_[-1]["loss"] < est.history_[0]["loss"]
    assert est.pretext_score(X[1500:1700]) > 0.6  # chance: 1/8
    Z = est.transform(X[1500:1510])
    assert Z.shape == (10, est.embedding_dim_) and Z.dtype == np.float32


def test_permutation_selection_picks_the_set_and_saved_sets_survive_loading(tmp_path):
    from skssl import load

    X, _ = load_digits_images(return_X_y=True)
    params = dict(max_epochs=1, batch_size=32, n_permutations=30, random_state=0)
    mean = JigsawSSL(**params).fit(X[:64])
    least = JigsawSSL(permutation_selection="min", **params).fit(X[:64])
    assert torch.equal(mean.networks_["head"].permutations, max_hamming_permutations(30, 9, selection="mean"))
    assert torch.equal(least.networks_["head"].permutations, max_hamming_permutations(30, 9, selection="min"))
    assert not torch.equal(mean.networks_["head"].permutations, least.networks_["head"].permutations)
    # a file written before the parameter existed: loaded with the default, keeps its own set
    path = tmp_path / "old.skssl"
    least.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["params"]["permutation_selection"]
    torch.save(payload, path)
    loaded = load(path)
    assert loaded.permutation_selection == "mean"
    assert torch.equal(loaded.networks_["head"].permutations, least.networks_["head"].permutations)
    np.testing.assert_array_equal(loaded.transform(X[:8]), least.transform(X[:8]))
