"""MoCo v2: InfoNCE, key encoder momentum, queue during fit, no collapse, sklearn checks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skssl.contrastive.moco import MoCo, info_nce
from skssl.datasets import load_digits_images
from skssl.evaluation import embedding_diagnostics


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # logits (1, 0, -1) / 0.5: -log(e^2 / (e^2 + 1 + e^-2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert info_nce(q, k, queue, 0.5).item() == pytest.approx(expected)
    # ignoring the second queued key leaves two logits
    ignore = torch.tensor([[False, True]])
    assert info_nce(q, k, queue, 0.5, ignore).item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))


def test_info_nce_lowest_when_key_matches_and_differs_from_queue():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    queue = F.normalize(torch.randn(64, 16, generator=g), dim=1)
    matched = info_nce(q, q, queue, 0.2)
    shuffled = info_nce(q, q.roll(1, 0), queue, 0.2)
    in_queue = info_nce(q, q, torch.cat([queue, q]), 0.2)  # positives also among negatives
    assert matched < in_queue and matched < shuffled
    assert info_nce(3 * q, q, queue, 0.2).item() == pytest.approx(matched.item(), rel=1e-5)  # scale-free


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:240], y[:240]


@pytest.fixture(scope="module")
def fitted(digits):
    return MoCo(max_epochs=6, batch_size=60, queue_size=100, random_state=0).fit(digits[0])


def test_no_collapse(fitted, digits):
    # measured: 0.029 and 37 after 6 epochs; an untrained network gives about 0.003 and 4
    d = embedding_diagnostics(fitted.transform(digits[0]))
    assert d["std_normalized"] > 0.015 and d["effective_rank"] > 15


def test_queue_filled_with_keys_of_training_images(fitted):
    queue = fitted.networks_["queue"]
    assert len(queue) == 100
    # 24 steps of 60 keys: 1440 keys written, pointer at 1440 mod 100
    assert queue.pointer.item() == 1440 % 100
    assert (queue.index >= 0).all() and (queue.index < 240).all()
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(100), atol=1e-5)


def test_queue_capped_at_training_size(digits):
    est = MoCo(max_epochs=1, batch_size=20, projection_dim=8, random_state=0).fit(digits[0][:50])
    assert len(est.networks_["queue"]) == 50


def test_key_encoder_is_frozen_and_an_ema_of_the_query_encoder(digits):
    X = digits[0][:60]
    frozen = MoCo(momentum=1.0, max_epochs=1, batch_size=30, projection_dim=8, random_state=0).fit(X)
    copied = MoCo(momentum=0.0, max_epochs=1, batch_size=30, projection_dim=8, random_state=0).fit(X)
    nets_f, nets_c = frozen.networks_, copied.networks_
    assert not any(p.requires_grad for p in nets_f["key_backbone"].parameters())
    # momentum 0: the key encoder is the query encoder after the last step
    for a, b in zip(nets_c["key_backbone"].parameters(), nets_c["backbone"].parameters()):
        assert torch.equal(a, b)
    # momentum 1: the key encoder keeps the initial weights, which the query encoder left
    changed = [not torch.equal(a, b) for a, b in zip(nets_f["key_backbone"].parameters(), nets_f["backbone"].parameters())]
    assert any(changed)


def test_same_seed_same_embedding(digits):
    X = digits[0][:64]
    a, b = (MoCo(max_epochs=1, batch_size=32, projection_dim=8, random_state=3).fit_transform(X) for _ in range(2))
    np.testing.assert_array_equal(a, b)
