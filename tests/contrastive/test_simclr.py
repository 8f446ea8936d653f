from skssl import SimCLR, few_label_score
from skssl.augment import Augment
from skssl.datasets import load_digits_images

from _untrained import fit_both

# Digits are not mirror-symmetric: the recipe's horizontal flip is turned off.
DIGITS_AUGMENT = Augment(crop_scale=(0.3, 1.0), flip_p=0.0, degrees=15, saturation=0.0, grayscale_p=0.0)


def test_simclr_embedding_beats_raw_pixels_with_five_labels_per_class():
    X, y = load_digits_images(return_X_y=True)
    est = SimCLR(max_epochs=8, batch_size=128, augment=DIGITS_AUGMENT, random_state=0).fit(X[:600])
    simclr = few_label_score(est, X[600:1000], y[600:1000], n_per_class=5)
    pixels = few_label_score(None, X[600:1000], y[600:1000], n_per_class=5)
    assert simclr > pixels + 0.01, (simclr, pixels)


def test_simclr_training_loss_decreases():
    # Any decrease is not enough: the same fit untrained drifts by about 0.04 (and falls in 3
    # seeds of 4); trained it falls by about 0.2.
    X, _ = load_digits_images(return_X_y=True)
    trained, untrained = fit_both(lambda: SimCLR(max_epochs=4, batch_size=128, random_state=0), X[:512])
    drop, untrained_drop = (est.history_[0]["loss"] - est.history_[-1]["loss"] for est in (trained, untrained))
    assert drop > 0.1 and drop > untrained_drop + 0.08, (drop, untrained_drop)
