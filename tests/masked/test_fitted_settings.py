"""What MAE and BEiT keep from their fit: targets, the optimiser, the tokenizer across retries."""

import warnings

import numpy as np
import pytest
import torch

from skssl import BEiT, MAE
from skssl._vit import VisionTransformer
from skssl.datasets import load_digits_images
from skssl.masked.mae import normalize_patches


def tiny_vit():
    return VisionTransformer(1, patch_size=2, embed_dim=16, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(return_X_y=True)[0][:64]


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_scoring_and_reconstruction_use_the_target_the_fit_used(digits, norm_pix_loss):
    mae = MAE(backbone=tiny_vit(), decoder_dim=16, decoder_depth=1, decoder_heads=2, norm_pix_loss=norm_pix_loss,
              max_epochs=1, batch_size=32, random_state=0).fit(digits)
    score, images = mae.pretext_score(digits), mae.reconstruct(digits[:4])
    mae.set_params(norm_pix_loss=not norm_pix_loss)  # a later change of the parameter ...
    assert mae.pretext_score(digits) == score  # ... scores against the same target
    np.testing.assert_array_equal(mae.reconstruct(digits[:4]), images)  # ... and reconstructs as before


def test_patch_normalisation_uses_the_unbiased_variance_and_mae_the_papers_betas(digits):
    patches = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    _, mean, std = normalize_patches(patches, eps=0.0)
    assert float(mean) == 1.5 and float(std) ** 2 == pytest.approx(5 / 3)  # unbiased: 5/3, biased: 5/4
    mae = MAE(backbone=tiny_vit(), decoder_dim=16, decoder_depth=1, decoder_heads=2, max_epochs=1)
    assert mae._make_optimizer([torch.nn.Parameter(torch.zeros(2, 2))]).defaults["betas"] == (0.9, 0.95)


class _FailsOnceAfterTheTokenizer(BEiT):
    """Runs out of memory at the first main step once, after the tokenizer has trained."""

    def _loss(self, x):
        if not getattr(self, "_failed", False):
            self._failed = True
            raise torch.OutOfMemoryError("simulated")
        return super()._loss(x)


def test_out_of_memory_retry_after_the_tokenizer_does_not_train_it_again(digits, monkeypatch):
    import skssl.masked.beit as beit_module

    sizes = []
    original = beit_module.fit_tokenizer

    def counted(tokenizer, batches, generator):
        def seen():
            for x in batches:
                sizes.append(x.shape[0])
                yield x
        return original(tokenizer, seen(), generator)

    monkeypatch.setattr(beit_module, "fit_tokenizer", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = _FailsOnceAfterTheTokenizer(backbone=tiny_vit(), n_tokens=8, tokenizer_epochs=1, max_epochs=1,
                                          batch_size=32, random_state=0).fit(digits)
    assert sizes == [32, 32]  # trained once (2 batches of 32), not again after the retry
    assert "tokenizer_loss" in est.history_[0] and est.history_[0]["codebook_usage"] > 0


def test_divergence_in_the_first_epoch_keeps_the_trained_tokenizer(digits):
    class Diverges(BEiT):
        def _loss(self, x):
            loss = super()._loss(x)
            return loss * float("nan") if self._step == 1 else loss

    est = Diverges(backbone=tiny_vit(), n_tokens=8, tokenizer_epochs=2, max_epochs=1, batch_size=16, random_state=0)
    with pytest.raises(FloatingPointError):
        est.fit(digits)
    trained = BEiT(backbone=tiny_vit(), n_tokens=8, tokenizer_epochs=2, max_epochs=1, batch_size=16,
                   random_state=0).fit(digits)
    # the restored weights are those after the tokenizer trained (the same tokenizer a clean fit trains)
    torch.testing.assert_close(est.networks_["tokenizer"].codebook, trained.networks_["tokenizer"].codebook)
