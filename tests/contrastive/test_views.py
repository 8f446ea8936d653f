"""Views of multi-view methods: each method's published recipe, one augmentation per view."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skssl import load
from skssl._checkpoint import parameter_key
from skssl.augment import Augment
from skssl.contrastive.barlow_twins import BarlowTwins
from skssl.contrastive.byol import BYOL
from skssl.contrastive.instance_discrimination import InstanceDiscriminationSSL
from skssl.contrastive.moco import MoCo
from skssl.contrastive.simclr import SimCLR
from skssl.contrastive.simsiam import SimSiam
from skssl.contrastive.vicreg import VICReg

RGB = np.random.default_rng(0).integers(0, 256, (32, 40, 40, 3), dtype=np.uint8)
TINY = dict(max_epochs=1, batch_size=16, random_state=0, backbone="small_cnn")
SOLARIZE = dataclasses.replace(Augment.none(), solarize_p=1.0)


@pytest.mark.parametrize("cls, recipe", [
    (SimCLR, Augment.simclr), (MoCo, Augment.moco_v2), (SimSiam, Augment.moco_v2),
    (BYOL, Augment.byol), (BarlowTwins, Augment.byol), (VICReg, Augment.byol),
    (InstanceDiscriminationSSL, Augment.moco_v2),
])
def test_each_method_defaults_to_its_papers_recipe(cls, recipe):
    est = cls(**TINY).fit(RGB)
    assert est.augment is None and est.augment_ == recipe(40, 3)


def test_byol_family_views_differ_as_in_the_paper():
    one, two = BYOL(**TINY).fit(RGB).augment_
    assert one.blur_p == 1.0 and two.blur_p == 0.1 and one.solarize_p == 0 and two.solarize_p == 0.2
    assert SimCLR(**TINY).fit(RGB).augment_.crop_scale == (0.08, 1.0)
    assert MoCo(**TINY).fit(RGB).augment_.crop_scale == (0.2, 1.0)


def test_a_tuple_gives_each_view_its_own_augmentation():
    est = SimCLR(augment=(Augment.none(), SOLARIZE))
    est.augment_, est._generator = est.augment, torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    first, second, third = est._views(x, n_views=3)
    assert torch.equal(first, x) and torch.equal(third, x)  # views cycle through the tuple
    assert torch.equal(second, torch.where(x >= 0.5, 1 - x, x))
    single = SimCLR(augment=SOLARIZE)
    single.augment_, single._generator = single.augment, est._generator
    assert all(torch.equal(v, second) for v in single._views(x))


def test_tuple_augment_follows_the_estimator_conventions(tmp_path):
    pair = Augment.byol(40, 3)
    est = BarlowTwins(**TINY, projection_dim=16, augment=pair)
    assert est.get_params()["augment"] is pair and clone(est).augment == pair
    assert "solarize_p=0.2" in repr(est)
    assert parameter_key(est) == parameter_key(clone(est))
    assert parameter_key(est) != parameter_key(clone(est).set_params(augment=pair[::-1]))
    est.fit(RGB)
    est.save(tmp_path / "bt.skssl")
    loaded = load(tmp_path / "bt.skssl")
    assert loaded.augment == pair and loaded.augment_ == pair and isinstance(loaded.augment_, tuple)
    np.testing.assert_array_equal(loaded.transform(RGB[:4]), est.transform(RGB[:4]))


@pytest.mark.parametrize("bad", [(), (Augment(), "strong"), ("a",)])
def test_invalid_tuple_augment_raises(bad):
    with pytest.raises(InvalidParameterError, match="tuple of Augment"):
        SimCLR(**TINY, augment=bad).fit(RGB)
