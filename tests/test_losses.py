import math

import torch

from skssl.losses import nt_xent


def test_nt_xent_matches_a_hand_computed_value():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    # Anchor 0 (z1[0]): positive z2[0] has cos 1; negatives z1[1], z2[1] have cos 0.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert math.isclose(nt_xent(z1, z2, t).item(), expected, rel_tol=1e-6)


def test_nt_xent_is_lowest_when_views_match_and_differ_from_negatives():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    matched = nt_xent(z, z + 0.01 * torch.randn(16, 8, generator=g))
    shuffled = nt_xent(z, z[torch.randperm(16, generator=g)])
    collapsed = nt_xent(torch.ones(16, 8), torch.ones(16, 8))
    assert matched < collapsed and matched < shuffled
    assert math.isclose(collapsed.item(), math.log(31), rel_tol=1e-5)  # uniform over 2n-1 candidates
