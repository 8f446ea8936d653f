"""Momentum target networks: frozen copies, the EMA update and BYOL's cosine schedule."""

import math

import pytest
import torch
from torch import nn

from skssl.contrastive._momentum import cosine_momentum, ema_update_, frozen_copy


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_frozen_copy_is_independent_and_frozen():
    online = _net(0)
    target = frozen_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for t, o in zip(target.state_dict().values(), online.state_dict().values()):
        assert torch.equal(t, o)
    with torch.no_grad():
        online[0].weight.add_(1.0)
    assert not torch.equal(target[0].weight, online[0].weight)


def test_frozen_copy_rejects_non_module():
    with pytest.raises(ValueError, match="nn.Module"):
        frozen_copy(torch.zeros(3))


def test_ema_update_formula_on_parameters_and_buffers():
    online, target = _net(0), frozen_copy(_net(1))
    online(torch.randn(8, 3))  # moves online's BN running stats and counter
    before_t = {k: v.clone() for k, v in target.state_dict().items()}
    before_o = {k: v.clone() for k, v in online.state_dict().items()}
    m = 0.9
    ema_update_(target, online, m)
    after = target.state_dict()
    for key, value in after.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, m * before_t[key] + (1 - m) * before_o[key])
        else:  # num_batches_tracked is copied
            assert torch.equal(value, before_o[key])
    for key, value in online.state_dict().items():  # online untouched
        assert torch.equal(value, before_o[key])
    assert all(not p.requires_grad for p in target.parameters())


def test_ema_update_extremes():
    online, target = _net(0), frozen_copy(_net(1))
    kept = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update_(target, online, 1.0)
    assert all(torch.equal(v, kept[k]) for k, v in target.state_dict().items() if v.is_floating_point())
    ema_update_(target, online, 0.0)
    assert all(torch.equal(v, online.state_dict()[k]) for k, v in target.state_dict().items())


def test_ema_update_validates():
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(_net(0), _net(1), 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update_(nn.Linear(3, 4), nn.Linear(3, 5), 0.5)


@pytest.mark.parametrize("base", [0.9, 0.99, 0.996])
def test_cosine_momentum_rises_from_base_to_one(base):
    K = 100
    values = [cosine_momentum(k, K, base) for k in range(K + 1)]
    assert values[0] == pytest.approx(base)
    assert values[K // 2] == pytest.approx((1 + base) / 2)
    assert values[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert cosine_momentum(25, K, base) == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2)
    assert cosine_momentum(2 * K, K, base) == pytest.approx(1.0)


def test_cosine_momentum_validates():
    for args in [(0, 0, 0.99), (-1, 10, 0.99), (0, 10, 1.5)]:
        with pytest.raises(ValueError):
            cosine_momentum(*args)
