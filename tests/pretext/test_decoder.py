"""The shared pixel decoder and per-image reconstruction error."""

import pytest
import torch

from skssl.backbones import build_backbone
from skssl.pretext._decoder import as_feature_map, feature_map_shape, make_decoder, reconstruction_error


@pytest.mark.parametrize(
    "in_size, out_size",
    [((2, 2), (8, 8)), ((4, 4), (32, 32)), ((3, 3), (10, 10)), ((8, 8), (8, 8)), ((4, 4), (2, 2)), ((1, 1), (7, 5))],
)
def test_decoder_output_has_exact_requested_size(in_size, out_size):
    decoder = make_decoder(64, 3, in_size, out_size)
    assert decoder(torch.randn(2, 64, *in_size)).shape == (2, 3, *out_size)


def test_decoder_uses_one_upsampling_stage_per_factor_of_two():
    decoder = make_decoder(128, 2, (2, 2), (16, 16))
    n_up = sum(isinstance(m, torch.nn.Upsample) for m in decoder.modules())
    assert n_up == 3


def test_decoder_reads_vectors_and_tokens():
    assert make_decoder(32, 1, (1, 1), (4, 4))(torch.randn(3, 32)).shape == (3, 1, 4, 4)
    tokens_with_cls = torch.randn(3, 1 + 16, 32)
    assert as_feature_map(tokens_with_cls, (4, 4)).shape == (3, 32, 4, 4)
    assert torch.equal(as_feature_map(tokens_with_cls, (4, 4))[:, :, 0, 0], tokens_with_cls[:, 1])
    assert as_feature_map(torch.randn(3, 16, 32)).shape == (3, 32, 4, 4)
    with pytest.raises(ValueError, match="feature map|grid"):
        as_feature_map(torch.randn(3, 7, 32))


def test_tokens_of_a_non_square_grid_keep_the_patch_grid_and_leave_out_the_class_token():
    # An 8x12 image at patch 2 is a 4x6 grid: 1 + 24 = 25 tokens, a square count that the old
    # guess read as a 5x5 map with the class token in its corner.
    from skssl._vit import VisionTransformer
    from skssl.backbones import Backbone
    from skssl.pretext._decoder import feature_map_shape, token_grid

    backbone = Backbone(VisionTransformer(1, patch_size=2, embed_dim=16, depth=1, num_heads=2))
    assert token_grid(backbone, (8, 12)) == (4, 6)
    assert feature_map_shape(backbone, 1, (8, 12)) == (16, (4, 6))
    tokens = backbone.feature_maps(torch.randn(2, 1, 8, 12))
    assert tokens.shape[1] == 25
    fmap = as_feature_map(tokens, (4, 6))
    assert torch.equal(fmap.flatten(2).transpose(1, 2), tokens[:, 1:])  # every cell a patch token, in order


def test_inpainting_on_a_vit_fits_a_non_square_image_on_its_patch_grid():
    import numpy as np

    from skssl import InpaintingSSL
    from skssl._vit import VisionTransformer

    X = np.random.default_rng(0).random((16, 8, 12)).astype(np.float32)
    est = InpaintingSSL(backbone=VisionTransformer(patch_size=2, embed_dim=16, depth=1, num_heads=2),
                        max_epochs=1, batch_size=8, random_state=0).fit(X)
    assert est.networks_["decoder"].in_size == (4, 6)
    assert est.transform(X).shape == (16, 16)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="out_size"):
        make_decoder(8, 1, (2, 2), (0, 4))


def test_reconstruction_error_is_per_image_mse():
    target = torch.zeros(2, 1, 2, 2)
    pred = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, 0.0], [0.0, 0.0]]]])
    assert torch.allclose(reconstruction_error(pred, target), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        reconstruction_error(pred, target[:, :, :1])


def test_decoder_on_small_cnn_map_can_fit_fixed_targets():
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", 1, (8, 8))
    channels, size = feature_map_shape(backbone, 1, (8, 8))
    assert (channels, size) == (128, (2, 2))
    decoder = make_decoder(channels, 1, size, (8, 8))
    x = torch.rand(16, 1, 8, 8)
    params = list(backbone.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    first = None
    for _ in range(100):
        loss = reconstruction_error(decoder(backbone.feature_maps(x)), x).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.4 * first
