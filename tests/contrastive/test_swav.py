"""SwAV: Sinkhorn-Knopp codes, the swapped prediction loss, prototypes and queue, learning on the digits."""

import numpy as np
import pytest
import torch

from skssl import few_label_score
from skssl.baselines import RandomInit
from skssl.contrastive.swav import SwAV
from skssl.datasets import load_digits_images
from skssl.losses import sinkhorn_knopp, swapped_prediction_loss

X_DIGITS, Y_DIGITS = load_digits_images(return_X_y=True)


def sinkhorn_float64(scores, epsilon, n_iters):
    """The paper's algorithm 1 in float64 numpy, written independently of skssl's."""
    q = np.exp(scores.astype(np.float64) / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(n_iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


@pytest.mark.parametrize("n, k", [(64, 10), (32, 100)])
def test_sinkhorn_matches_a_float64_reference_and_is_doubly_stochastic(n, k):
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(k, 8, generator=g), dim=1).T
    q = sinkhorn_knopp(scores, epsilon=0.05, n_iters=3)
    assert q.dtype == torch.float32 and q.shape == (n, k)
    np.testing.assert_allclose(q.numpy(), sinkhorn_float64(scores.numpy(), 0.05, 3), rtol=1e-4, atol=1e-6)
    # Rows are distributions; the prototypes share the batch evenly (each gets n / k images).
    torch.testing.assert_close(q.sum(1), torch.ones(n))
    many = sinkhorn_knopp(scores, epsilon=0.05, n_iters=200)
    torch.testing.assert_close(many.sum(0), torch.full((k,), n / k), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(many.sum(1), torch.ones(n))
    # Three iterations already bring the column sums close to equipartition from far off.
    raw = torch.softmax(scores / 0.05, dim=1).sum(0)
    assert (q.sum(0) - n / k).abs().max() < 0.5 * (raw - n / k).abs().max()


def test_sinkhorn_is_fp32_under_autocast_and_safe_for_tiny_epsilon():
    scores = torch.tensor([[1.0, -1.0, 0.5], [0.2, 0.9, -0.3]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = sinkhorn_knopp(scores.bfloat16(), epsilon=0.001, n_iters=3)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()  # exp(1000) would overflow without the shift
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(scores, epsilon=0.0)
    with pytest.raises(ValueError, match="prototypes"):
        sinkhorn_knopp(scores[0])


def test_swapped_prediction_loss_is_the_codes_cross_entropy():
    scores = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    codes = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    log_p = torch.log_softmax(scores.detach() / 0.5, dim=1)
    expected = -(codes * log_p).sum(1).mean()
    loss = swapped_prediction_loss(scores, codes, temperature=0.5)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert scores.grad is not None
    with pytest.raises(ValueError, match="equal shape"):
        swapped_prediction_loss(scores, codes[:1])


def test_prototypes_stay_unit_length_and_are_frozen_for_the_first_epoch():
    kw = dict(batch_size=32, n_prototypes=8, hidden_dim=16, n_local_crops=2, random_state=0)
    initial = SwAV(max_epochs=1, lr=1e-12, **kw).fit(X_DIGITS[:64]).networks_["prototypes"].weight
    frozen = SwAV(max_epochs=1, freeze_prototypes_epochs=1, **kw).fit(X_DIGITS[:64])
    trained = SwAV(max_epochs=1, freeze_prototypes_epochs=0, **kw).fit(X_DIGITS[:64])
    torch.testing.assert_close(frozen.networks_["prototypes"].weight, initial)
    assert not torch.allclose(trained.networks_["prototypes"].weight, initial, atol=1e-4)
    # The projector trains in both.
    assert not torch.allclose(frozen.networks_["projector"][0].weight,
                              SwAV(max_epochs=1, lr=1e-12, **kw).fit(X_DIGITS[:64]).networks_["projector"][0].weight)
    torch.testing.assert_close(trained.networks_["prototypes"].weight.norm(dim=1), torch.ones(8))


def test_queue_holds_recent_projections_and_enters_the_codes_once_full(monkeypatch):
    from skssl.contrastive import swav as swav_module

    sizes = []
    real = swav_module.sinkhorn_knopp

    def recording(scores, *args):
        sizes.append(scores.shape[0])
        return real(scores, *args)

    monkeypatch.setattr(swav_module, "sinkhorn_knopp", recording)
    est = SwAV(max_epochs=2, batch_size=16, n_prototypes=8, hidden_dim=16, projection_dim=8, n_local_crops=1, queue_length=32,
               random_state=0).fit(X_DIGITS[:64])
    # 4 steps per epoch, 2 global crops: the queue (32 rows) is full after two steps of 16.
    assert sizes == [16] * 4 + [48] * 12
    queue = est.networks_["queue"].features
    assert queue.shape == (2, 32, 8)
    torch.testing.assert_close(queue.norm(dim=2), torch.ones(2, 32))


@pytest.mark.slow
def test_swav_beats_the_random_init_backbone_on_the_digits():
    kw = dict(random_state=0)
    # 30 epochs on 1,000 digits (a CPU-test budget): measured 0.867 against the floor's 0.830
    # (0.842 at 10 epochs, 0.852 at 20; 0.885 with all 1,797 digits).
    swav = few_label_score(SwAV(**kw).fit(X_DIGITS[:1000]), X_DIGITS, Y_DIGITS, n_per_class=10, n_repeats=3)
    floor = few_label_score(RandomInit(**kw).fit(X_DIGITS), X_DIGITS, Y_DIGITS, n_per_class=10, n_repeats=3)
    assert swav > floor + 0.02
