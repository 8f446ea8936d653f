"""The ViT backbone: patch sizes, position embeddings, stages, and use by the other methods."""

import numpy as np
import pytest
import torch

from skssl import JigsawSSL, RotationSSL, SimCLR
from skssl._vit import (VisionTransformer, auto_patch_size, patchify, sincos_position_embedding, unpatchify,
                        vit_parts)
from skssl.backbones import BACKBONES, build_backbone
from skssl.datasets import load_digits_images
from skssl.pretext.inpainting import InpaintingSSL


def tiny_vit(channels=1, **kwargs):
    return VisionTransformer(channels, patch_size=2, embed_dim=32, depth=2, num_heads=2, **kwargs)


@pytest.mark.parametrize(("size", "patch"), [(8, 2), (28, 4), (32, 4), (96, 8), (224, 16)])
def test_patch_size_follows_the_image_size(size, patch):
    assert auto_patch_size((size, size)) == patch


def test_named_vits_are_registered_and_pick_their_patch_size():
    assert {"vit_tiny", "vit_small"} <= set(BACKBONES)
    backbone = build_backbone("vit_tiny", 3, (32, 32))
    embedding, groups = vit_parts(backbone, "test")
    assert embedding.patch_size == 4 and embedding.embed_dim == 192 and len(groups) == 4
    assert backbone.stage_dims(3, (32, 32)) == [192] * 5


def test_stages_output_tokens_with_a_class_token_and_split_the_blocks():
    vit = VisionTransformer(1, image_size=(8, 8), embed_dim=32, depth=5, num_heads=2, n_stages=2)
    assert [len(s) for s in vit.stages[1:]] == [2, 3 + 1]  # the last group ends with the final norm
    backbone = build_backbone(vit, 1, (8, 8))
    tokens = backbone.feature_maps(torch.randn(3, 1, 8, 8), stage=1)
    assert tokens.shape == (3, 1 + 16, 32)
    assert backbone(torch.randn(3, 1, 8, 8), stage=0).shape == (3, 32)


def test_position_embeddings_are_distinct_bounded_and_fixed():
    table = sincos_position_embedding((4, 5), 32)
    assert table.shape == (20, 32) and table.abs().max() <= 1
    assert torch.cdist(table, table).add(torch.eye(20)).min() > 0.1  # every patch position differs
    vit = tiny_vit()
    assert not any("position" in name for name in vit.state_dict())  # not learned, not saved


def test_other_image_sizes_work_and_odd_sizes_are_padded():
    vit = VisionTransformer(1, image_size=(8, 8), embed_dim=32, depth=1, num_heads=2)
    assert vit(torch.randn(2, 1, 12, 10)).shape == (2, 1 + 6 * 5, 32)


def test_patchify_round_trips():
    x = torch.randn(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    assert torch.equal(unpatchify(patches, 4, (2, 3), 3), x)
    assert torch.equal(patches[0, 1].view(4, 4, 3).permute(2, 0, 1), x[0, :, 0:4, 4:8])


def test_attention_mixes_tokens_so_the_output_depends_on_other_patches():
    vit = tiny_vit().eval()
    x = torch.randn(1, 1, 8, 8)
    y = x.clone()
    y[..., 6:, 6:] += 1.0  # only the last patch changes
    with torch.no_grad():
        first_patch = [vit(z)[0, 1] for z in (x, y)]
    assert not torch.allclose(*first_patch)


def test_non_vit_backbones_are_refused_by_name():
    with pytest.raises(ValueError, match="Vision Transformer"):
        vit_parts(build_backbone("small_cnn", 1, (8, 8)), "MAE")


@pytest.mark.parametrize("cls", [RotationSSL, SimCLR, InpaintingSSL, JigsawSSL], ids=lambda c: c.__name__)
def test_other_methods_train_a_vit(cls):
    X, _ = load_digits_images(return_X_y=True)
    est = cls(backbone=tiny_vit(), max_epochs=1, batch_size=16, random_state=0).fit(X[:32])
    Z = est.transform(X[:8])
    assert Z.shape == (8, 32) and np.isfinite(Z).all()


def test_an_int_image_size_is_accepted_as_a_square():
    vit = VisionTransformer(1, image_size=32, embed_dim=16, depth=1, num_heads=2)
    assert vit.patch_size == auto_patch_size(32) == 4


def test_position_tables_are_float32_and_built_once_per_grid(monkeypatch):
    import skssl._vit as vit_module

    vit_module._cached_table.cache_clear()
    calls = []
    original = vit_module.sincos_position_embedding
    monkeypatch.setattr(vit_module, "sincos_position_embedding", lambda *a, **k: calls.append(a) or original(*a, **k))
    embedding = tiny_vit().stages[0]
    x = torch.zeros(2, 1, 8, 12)
    first = embedding.positions(embedding.grid(x), x)
    with torch.inference_mode():  # a table first built in transform must serve training too
        embedding.positions((3, 3), x)
    again = embedding.positions(embedding.grid(x), x)
    assert len(calls) == 2 and first.dtype == torch.float32 and again.data_ptr() == first.data_ptr()
    torch.testing.assert_close(first, sincos_position_embedding((4, 6), 32))
    tokens = torch.zeros(2, 9, 32, requires_grad=True)
    (tokens + embedding.positions((3, 3), tokens)).sum().backward()  # not an inference tensor


def test_class_token_of_the_patch_embedding_stage_is_refused():
    from skssl import MAE

    X = load_digits_images(return_X_y=True)[0][:16]
    with pytest.raises(ValueError, match="pool='cls' at stage=0"):
        MAE(backbone=tiny_vit(), stage=0, pool="cls", max_epochs=1, batch_size=8).fit(X)
    Z = MAE(backbone=tiny_vit(), stage=1, pool="cls", max_epochs=1, batch_size=8, random_state=0).fit(X).transform(X)
    assert np.ptp(Z, axis=0).max() > 0  # a later stage's class token depends on the image
