"""SyntheticTransferSSL: gradient reversal, the domain game, dense heads that learn, synthetic input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from skssl.datasets import load_digits_images, make_synthetic_scenes
from skssl.pretext.synthetic_transfer import SyntheticTransferSSL, _ReverseGradient, balanced_edge_loss, dann_ramp

from _untrained import fit_both

TINY = dict(max_epochs=1, batch_size=16, random_state=0, discriminator_width=16)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits_images(return_X_y=True)
    return X


def test_gradient_reversal_is_the_identity_forward_and_minus_weight_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = _ReverseGradient.apply(x, 0.25)
    torch.testing.assert_close(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.25 * torch.arange(3.0).expand(4, 3))


def test_dann_ramp_rises_from_zero_to_one():
    values = [dann_ramp(p) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0 and values[-1] > 0.99 and np.all(np.diff(values) > 0)


def test_balanced_edge_loss_weighs_the_rare_class_up():
    edges = torch.zeros(1, 1, 10, 10)
    edges[..., 0, :] = 1  # 10% edge pixels
    miss_edges = torch.full_like(edges, -3.0)  # says "no edge" everywhere
    # unbalanced BCE rewards ignoring the rare edges; the balanced loss charges them 9 times more per pixel
    assert F.binary_cross_entropy_with_logits(miss_edges, edges) < 0.4
    assert balanced_edge_loss(miss_edges, edges) > 1.4


def _grads(est, x, weight, network="backbone"):
    """Gradients of ``network`` from the training loss of batch ``x`` at mid-training, with a fixed synthetic batch."""
    est.adversarial_weight = weight
    est._generator = torch.Generator().manual_seed(0)
    est.networks_.zero_grad()
    est._loss(x).backward()
    return [p.grad.clone() for p in est.networks_[network].parameters()]


def _domain_term_grads(est, x, target):
    """Backbone gradients of the discriminator's BCE against ``target`` labels, through plain networks."""
    est._generator = torch.Generator().manual_seed(0)
    synthetic = est._synthetic_batch(16, x.device)["images"]
    est.networks_.zero_grad()
    embedding, _ = est._features(est._standardize(torch.cat([x, synthetic])))
    logits = est.networks_["domain_discriminator"](embedding).squeeze(1)
    F.binary_cross_entropy_with_logits(logits, target).backward()
    return [p.grad for p in est.networks_["backbone"].parameters()]


@pytest.fixture
def mid_training(digits):
    est = SyntheticTransferSSL(**TINY).fit(digits[:64])
    x = torch.as_tensor(digits[:16], dtype=torch.float32).view(16, 1, 8, 8) / 16
    est._n_train, est._step, est._total_steps = 64, 3, 10
    est.networks_.train()
    return est, x


def test_reversal_sends_the_discriminator_s_gradient_back_reversed_and_ramped(mid_training):
    est, x = mid_training
    est.domain_loss = "reversal"
    without, with_domain = _grads(est, x, 0.0), _grads(est, x, 2.0)
    plain = _domain_term_grads(est, x, torch.cat([torch.zeros(16), torch.ones(16)]))
    factor = 2.0 * dann_ramp(0.3)
    for w0, w, g in zip(without, with_domain, plain):
        torch.testing.assert_close(w - w0, -factor * g, rtol=1e-3, atol=1e-6)


def test_confusion_pushes_the_backbone_towards_fifty_fifty_and_leaves_the_discriminator_alone(mid_training):
    est, x = mid_training
    assert est.domain_loss == "confusion"
    without, with_domain = _grads(est, x, 0.0), _grads(est, x, 2.0)
    towards_half = _domain_term_grads(est, x, torch.full((32,), 0.5))
    factor = 2.0 * dann_ramp(0.3)
    for w0, w, g in zip(without, with_domain, towards_half):
        torch.testing.assert_close(w - w0, factor * g, rtol=1e-3, atol=1e-6)
    # the discriminator learns from its own loss only, whatever the weight
    for a, b in zip(_grads(est, x, 0.0, "domain_discriminator"), _grads(est, x, 2.0, "domain_discriminator")):
        torch.testing.assert_close(a, b)


def _depth_correlation(est, scenes):
    depth = est.predict_maps(scenes.images)["depth"]
    return float(np.mean([spearmanr(p.ravel(), t.ravel())[0] for p, t in zip(depth, scenes.depth)]))


def test_held_out_synthetic_depth_correlates_with_the_truth_only_when_trained(digits):
    # Measured (seed 0): Spearman 0.82 trained, -0.18 untrained (6 s of CPU for both fits).
    held_out = make_synthetic_scenes(200, 8, channels=1, random_state=123)
    trained, untrained = fit_both(lambda: SyntheticTransferSSL(max_epochs=3, batch_size=32, random_state=0,
                                                               discriminator_width=32), digits[:320])
    rho, rho_untrained = _depth_correlation(trained, held_out), _depth_correlation(untrained, held_out)
    assert rho > 0.6 and rho > rho_untrained + 0.3, (rho, rho_untrained)


def test_without_the_adversary_the_discriminator_tells_held_out_domains_apart(digits):
    # Measured (seed 0): balanced accuracy 1.0 trained, 0.5 untrained (2 epochs of 10 steps were
    # too few: every logit was still positive, 0.5).
    trained, untrained = fit_both(lambda: SyntheticTransferSSL(max_epochs=3, batch_size=16, random_state=0,
                                                               adversarial_weight=0.0, discriminator_width=32),
                                  digits[:480])
    score, score_untrained = trained.domain_score(digits[1000:1200]), untrained.domain_score(digits[1000:1200])
    assert score > 0.9 and score > score_untrained + 0.2, (score, score_untrained)


def test_given_synthetic_arrays_are_resized_recoloured_and_used(digits):
    scenes = make_synthetic_scenes(40, 16, random_state=0)  # RGB at twice the digits' size
    scenes.depth = np.full_like(scenes.depth, 5.0) + np.random.default_rng(0).random(scenes.depth.shape)
    seen = []

    class Recording(SyntheticTransferSSL):
        def _after_step(self):
            seen.append(tuple(self._synthetic["images"].shape))

    est = Recording(synthetic=dict(scenes), **TINY).fit(digits[:32])
    assert seen and seen[0] == (40, 1, 8, 8)
    assert est.depth_scale_[0] == pytest.approx(5.5, abs=0.05)
    assert not hasattr(est, "_synthetic")  # the set is fit-time data, never pickled
    assert est.predict_maps(digits[:3])["normals"].shape == (3, 8, 8, 3)


def test_grayscale_images_get_grayscale_renders_of_the_working_size(digits):
    seen = []

    class Recording(SyntheticTransferSSL):
        def _after_step(self):
            seen.append(tuple(self._synthetic["images"].shape))

    est = Recording(synthetic=50, image_size=12, **TINY).fit(digits[:32])
    assert seen[0] == (50, 1, 12, 12)
    assert est._render(3, 0).images.shape == (3, 12, 12)  # rendered so, not converted afterwards


def test_only_the_chosen_tasks_get_heads_and_predictions(digits):
    est = SyntheticTransferSSL(tasks=("normals",), **TINY).fit(digits[:32])
    assert "normals" in est.networks_ and "depth" not in est.networks_ and "edges" not in est.networks_
    maps = est.predict_maps(digits[:4])
    assert list(maps) == ["normals"]
    np.testing.assert_allclose(np.linalg.norm(maps["normals"], axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("params", "match"), [
    (dict(tasks=("depth", "colour")), "tasks must be"),
    (dict(tasks=()), "tasks must be"),
    (dict(tasks=("depth", "depth")), "tasks must be"),
    (dict(synthetic={"images": np.zeros((4, 8, 8), np.uint8)}), "missing"),
    (dict(synthetic={"images": np.zeros((4, 8, 8), np.uint8), "depth": np.zeros((4, 8, 7)),
                     "normals": np.zeros((4, 8, 8, 3)), "edges": np.zeros((4, 8, 8))}), "depth"),
    (dict(synthetic={"images": np.zeros((4, 8, 8), np.uint8), "depth": np.full((4, 8, 8), np.nan),
                     "normals": np.zeros((4, 8, 8, 3)), "edges": np.zeros((4, 8, 8))}), "NaN"),
    (dict(synthetic={"images": np.full((4, 8, 8), 2.0), "depth": np.zeros((4, 8, 8)),
                     "normals": np.zeros((4, 8, 8, 3)), "edges": np.zeros((4, 8, 8))}), r"\[0, 1\]"),
    (dict(synthetic={"images": np.zeros((4, 8, 8, 2), np.uint8), "depth": np.zeros((4, 8, 8)),
                     "normals": np.zeros((4, 8, 8, 3)), "edges": np.zeros((4, 8, 8))}), "channels"),
])
def test_bad_tasks_and_synthetic_arrays_are_refused_by_name(digits, params, match):
    with pytest.raises(ValueError, match=match):
        SyntheticTransferSSL(**{**TINY, **params}).fit(digits[:32])
