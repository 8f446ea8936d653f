"""MemoryBank (NPID/PIRL) and Queue (MoCo) mechanics."""

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from skssl.contrastive._memory import MemoryBank, Queue


def test_bank_starts_with_unit_rows_and_unset_normaliser():
    bank = MemoryBank(10, 4)
    assert bank.features.shape == (10, 4)
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(10))
    assert not bank.log_z_known and torch.isfinite(bank.log_z)  # finite, so divergence snapshots are taken
    assert set(dict(bank.named_buffers())) == {"features", "log_z", "log_z_known"}


def test_bank_update_is_normalised_momentum_average_of_batch_rows_only():
    bank = MemoryBank(5, 2)
    bank.features.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1], [1, 0]]))
    before = bank.features.clone()
    bank.update(torch.tensor([1, 4]), torch.tensor([[1.0, 0], [0, 1]]), momentum=0.5)
    s = 1 / math.sqrt(2)
    assert torch.allclose(bank.features[1], torch.tensor([s, s]))  # normalise(0.5*(0,1) + 0.5*(1,0))
    assert torch.allclose(bank.features[4], torch.tensor([s, s]))
    untouched = [0, 2, 3]
    assert torch.equal(bank.features[untouched], before[untouched])


def test_bank_update_momentum_extremes():
    bank = MemoryBank(3, 3)
    old = bank.features.clone()
    new = torch.randn(3, 3)
    bank.update(torch.arange(3), new, momentum=1.0)
    assert torch.allclose(bank.features, old)
    bank.update(torch.arange(3), new, momentum=0.0)
    assert torch.allclose(bank.features, F.normalize(new, dim=1))
    with pytest.raises(ValueError, match="momentum"):
        bank.update(torch.arange(3), new, momentum=1.5)
    with pytest.raises(ValueError, match="indices"):
        bank.update(torch.arange(2), new, momentum=0.5)


def test_bank_negatives_are_seeded_and_in_range():
    bank = MemoryBank(7, 2)
    a = bank.sample_negatives(1000, torch.Generator().manual_seed(0))
    b = bank.sample_negatives(1000, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() <= 6 and len(a.unique()) == 7


def test_bank_normaliser_estimated_once_from_first_batch():
    bank = MemoryBank(100, 2)
    first = torch.zeros(4, 5)  # exp(0) = 1 on average: Z = n
    assert bank.log_normaliser(first).item() == pytest.approx(math.log(100))
    assert bank.log_normaliser(torch.full((4, 5), 3.0)).item() == pytest.approx(math.log(100))


def test_bank_fill_resizes():
    bank = MemoryBank(3, 2)
    bank.fill(torch.tensor([[3.0, 4.0]] * 6))
    assert bank.features.shape == (6, 2) and len(bank) == 6
    assert torch.allclose(bank.features[0], torch.tensor([0.6, 0.8]))


def test_queue_fifo_pointer_wraps_around():
    q = Queue(5, 1)
    q.enqueue(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([10, 11, 12]))
    assert q.pointer.item() == 3
    q.enqueue(torch.tensor([[4.0], [5.0], [6.0]]), torch.tensor([13, 14, 15]))
    # 6 overwrote the oldest key (1); the pointer wrapped to row 1
    assert q.keys.flatten().tolist() == [6.0, 2.0, 3.0, 4.0, 5.0]
    assert q.index.tolist() == [15, 11, 12, 13, 14]
    assert q.pointer.item() == 1


def test_queue_keeps_last_keys_of_a_batch_larger_than_itself():
    q = Queue(3, 1)
    q.enqueue(torch.arange(7.0)[:, None], torch.arange(7))
    assert sorted(q.keys.flatten().tolist()) == [4.0, 5.0, 6.0]
    q.enqueue(torch.tensor([[7.0]]), torch.tensor([7]))  # overwrites the oldest, 4
    assert sorted(q.keys.flatten().tolist()) == [5.0, 6.0, 7.0]


def test_queue_starts_with_unit_keys_of_no_image():
    q = Queue(4, 3)
    assert torch.allclose(q.keys.norm(dim=1), torch.ones(4))
    assert (q.index == -1).all() and q.pointer.item() == 0


def test_state_survives_pickling():
    q, bank = Queue(4, 2), MemoryBank(4, 2)
    q.enqueue(torch.ones(3, 2), torch.arange(3))
    q2, bank2 = pickle.loads(pickle.dumps((q, bank)))
    assert q2.pointer.item() == 3 and torch.equal(q2.keys, q.keys) and torch.equal(bank2.features, bank.features)


@pytest.mark.parametrize("args", [(0, 2), (2, 0)])
def test_bad_sizes_raise(args):
    with pytest.raises(ValueError):
        MemoryBank(*args)
    with pytest.raises(ValueError):
        Queue(*args)
