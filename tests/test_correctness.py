"""Issue 9's defects, each pinned by a test that failed before its fix."""

import numpy as np
import pytest
import torch

import skssl
from skssl.base import BaseSSL
from skssl.contrastive.barlow_twins import barlow_twins_loss
from skssl.contrastive.byol import byol_loss
from skssl.contrastive.instance_discrimination import bank_nce_loss, instance_softmax_loss, nce_loss
from skssl.contrastive._memory import MemoryBank
from skssl.contrastive.moco import info_nce
from skssl.contrastive.simsiam import simsiam_loss
from skssl.contrastive.vicreg import vicreg_loss
from skssl.datasets import load_digits_images, make_moving_images
from skssl.video import VideoSSL
from skssl.losses import nt_xent
from skssl.pretext.rotation import RotationSSL

from test_estimator_checks import SMALL_HEADS


@pytest.fixture(scope="module")
def X():
    return load_digits_images(return_X_y=True)[0][:48]


@pytest.mark.parametrize("cls", skssl.ESTIMATORS, ids=lambda c: c.__name__)
def test_every_estimator_refits_from_its_own_checkpoint(cls, X, tmp_path):
    """A finished fit re-run with the same checkpoint_dir resumes (and ends) from its checkpoint."""
    data = np.random.default_rng(0).random((48, 8, 8, 3)) if cls.__name__ == "ColorizationSSL" else X
    if issubclass(cls, VideoSSL):  # clips of the digits moving
        data = make_moving_images(48, 6, 8, object_size=4, random_state=0).clips
    params = dict(max_epochs=1, batch_size=16, random_state=0, checkpoint_dir=str(tmp_path), **SMALL_HEADS.get(cls.__name__, {}))
    first = cls(**params).fit(data)
    again = cls(**params).fit(data)  # loads the checkpoint: nothing left to train
    assert len(again.history_) == 1 and again.history_ == first.history_
    np.testing.assert_array_equal(first.transform(data), again.transform(data))


def test_a_method_cannot_shadow_the_training_loop():
    with pytest.raises(TypeError, match="_loop_restore"):
        class Clashing(RotationSSL):
            def _loop_restore(self, x):
                return x


def test_npid_records_finite_weights_and_restores_them_on_divergence(X):
    class DivergesInEpoch2(skssl.InstanceDiscriminationSSL):
        def _before_epoch(self, images, epoch):
            super()._before_epoch(images, epoch)
            if epoch == 1:  # the test's own copy of the state the second epoch starts from
                self.epoch_2_start = {k: t.clone() for k, t in self.networks_.state_dict().items()}

        def _after_step(self):
            super()._after_step()
            if len(self.history_) == 1 and self._step == 5:  # 3 steps per epoch: the second step of epoch 2
                with torch.no_grad():  # the weights blow up, as with far too high a learning rate
                    for p in self.networks_["backbone"].parameters():
                        p.mul_(float("inf"))

    est = DivergesInEpoch2(max_epochs=3, batch_size=16, projection_dim=8, random_state=0)
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 3.*keeps its last finite weights"):
        est.fit(X)
    state = est.networks_.state_dict()
    assert state.keys() == est.epoch_2_start.keys()
    for name, tensor in state.items():  # weights, BatchNorm statistics and memory bank as epoch 2 began
        torch.testing.assert_close(tensor, est.epoch_2_start[name], rtol=0, atol=0, msg=name)
    assert not bool(state["memory.log_z_known"])  # softmax loss never estimates log Z


def test_memory_bank_loads_files_that_marked_unknown_log_z_as_nan():
    bank = MemoryBank(4, 2)
    old = {k: v for k, v in bank.state_dict().items() if k != "log_z_known"}
    old["log_z"] = torch.tensor(float("nan"))
    fresh = MemoryBank(4, 2)
    fresh.load_state_dict(old)
    assert fresh.log_z.item() == 0.0 and not fresh.log_z_known
    old["log_z"] = torch.tensor(2.5)
    fresh.load_state_dict(old)
    assert fresh.log_z.item() == 2.5 and fresh.log_z_known


def _losses():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    unit = torch.nn.functional.normalize
    with torch.random.fork_rng():
        torch.manual_seed(0)
        bank = MemoryBank(64, 16)
    index = torch.arange(32)
    queue = unit(torch.randn(50, 16, generator=g), dim=1)
    return {
        "nt_xent": lambda: nt_xent(a, b, 0.07),
        "info_nce": lambda: info_nce(a, b, queue, 0.07),
        "instance_softmax_loss": lambda: instance_softmax_loss(unit(a, dim=1), bank.features, index, 0.07),
        "bank_nce_loss": lambda: bank_nce_loss(unit(a, dim=1), bank, index, 40, 0.07, torch.Generator().manual_seed(1)),
        "nce_loss": lambda: nce_loss(a[:, 0] * 5, a[:, 1:] * 5, 1.3, 64),
        "barlow_twins_loss": lambda: barlow_twins_loss(a, b),
        "vicreg_loss": lambda: vicreg_loss(a, b),
        "byol_loss": lambda: byol_loss(a, b),
        "simsiam_loss": lambda: simsiam_loss(a, b),
    }


@pytest.mark.parametrize("name", list(_losses()))
def test_losses_are_fp32_inside_the_estimators_bf16_autocast(name):
    """Under bf16 autocast a plain matmul rounds logits to 8 bits of mantissa; the losses must not."""
    fp32 = _losses()[name]().item()
    est = skssl.SimCLR(precision="bf16")
    with est._autocast(torch.device("cpu")):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
        bf16_region = _losses()[name]()
    assert bf16_region.dtype == torch.float32
    assert bf16_region.item() == pytest.approx(fp32, rel=1e-5)


def test_without_the_fp32_guard_autocast_would_round_the_logits():
    """The reason for the guard, measured on skssl's own loss inside the estimator's bf16 region."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1) for _ in range(2))
    exact = nt_xent(a, b, 0.07).item()
    est = skssl.SimCLR(precision="bf16")
    with est._autocast(torch.device("cpu")):
        guarded = nt_xent(a, b, 0.07).item()
        unguarded = nt_xent.__wrapped__(a, b, 0.07).item()  # the same maths without fp32_loss
    assert guarded == pytest.approx(exact, rel=1e-6)
    assert abs(unguarded - exact) > 1e-3, (unguarded, exact)  # measured: 0.003


def test_augmentation_runs_in_fp32_outside_autocast():
    est = skssl.SimCLR(precision="bf16")
    est.augment_ = skssl.augment.Augment(blur_p=1.0, crop_scale=None, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    x = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    est._generator = torch.Generator().manual_seed(0)
    expected = est._augment(x)
    est._generator = torch.Generator().manual_seed(0)
    with est._autocast(torch.device("cpu")):
        inside = est._augment(x)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)


def test_base_hooks_are_the_only_names_methods_override():
    """Every method's own names stay clear of the loop's ``_loop_`` prefix."""
    from skssl._training import LOOP_NAMES

    assert LOOP_NAMES and all(name.startswith("_loop_") for name in LOOP_NAMES)
    for cls in skssl.ESTIMATORS:
        for klass in cls.__mro__:
            if klass not in (BaseSSL,) and issubclass(klass, BaseSSL):
                assert not LOOP_NAMES & set(vars(klass)), klass
