import torch

from skssl import RotationSSL
from skssl.datasets import load_digits_images
from skssl.pretext.rotation import rotate_all


def test_rotate_all_stacks_the_four_rotations_with_labels():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    rotated, labels = rotate_all(x)
    assert rotated.shape == (8, 1, 3, 3)  # padded to a square first
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    torch.testing.assert_close(rotated[4:6], torch.rot90(rotated[0:2], 2, dims=(2, 3)))


def test_rotation_accuracy_on_held_out_digits_is_well_above_chance():
    X, _ = load_digits_images(return_X_y=True)
    est = RotationSSL(max_epochs=6, batch_size=64, random_state=0).fit(X[:600])
    assert est.pretext_score(X[600:1000]) > 0.6  # chance is 0.25


def test_untrained_head_is_at_chance_level():
    X, _ = load_digits_images(return_X_y=True)
    est = RotationSSL(max_epochs=1, batch_size=64, lr=1e-9, random_state=0).fit(X[:200])
    assert abs(est.pretext_score(X[600:1000]) - 0.25) < 0.15
