"""
Quickstart: pretrain on the digits, then few labels
===================================================

Self-supervised pretraining on the digits, then a few labels.

1. Pretrain RotationSSL and SimCLR on all 1,797 digit images, without labels.
2. Compare embeddings with 1, 5 and 10 labelled images per class (a linear
   probe trained on those, tested on every other image) against raw pixels
   and an untrained backbone.
3. Let GridSearchCV choose the pretext task inside a Pipeline.

Runs in about two minutes on 2 CPU cores (faster on a GPU). The documentation
site runs it at small settings (``SKSSL_EXAMPLE_SIZE=small``: fewer images and
epochs), so its numbers there are lower than yours will be.
"""

import os
import sys
import time

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import RotationSSL, SimCLR, few_label_score, load_digits_images
from skssl.augment import Augment
from skssl.baselines import RandomInit

# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"
# The script's folder (sphinx-gallery, which runs the examples for the docs, defines no __file__).
OUT = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "output")

X, y = load_digits_images(return_X_y=True)
if SMALL:
    X, y = X[:400], y[:400]
print(f"digits: {X.shape[0]} images of {X.shape[1]}x{X.shape[2]} pixels, {len(set(y))} classes\n")

# Digits are not mirror-symmetric, so SimCLR's horizontal flips would teach
# the wrong invariance: small rotations instead. Choosing augmentations that
# keep the meaning of your images is the most important knob in SimCLR.
digits_augment = Augment(crop_scale=(0.3, 1.0), flip_p=0.0, degrees=15, saturation=0.0, grayscale_p=0.0)

models = {
    "random-init backbone": RandomInit(random_state=0),
    "RotationSSL": RotationSSL(max_epochs=1 if SMALL else 15, random_state=0),
    "SimCLR": SimCLR(max_epochs=2 if SMALL else 50, augment=digits_augment, random_state=0),
}
embeddings = {"raw pixels": None}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X)  # no labels
    embeddings[name] = model.transform(X)
    print(f"pretrained {name:<22} {time.perf_counter() - start:5.1f} s   embedding {embeddings[name].shape}")

n_labels = (1, 5, 10)
print(f"\nfew-label accuracy (linear probe, mean of 5 draws), labels per class: {n_labels}")
print(f"{'':24}" + "".join(f"{n:>8}" for n in n_labels))
table = {}
for name, Z in embeddings.items():
    scores = few_label_score(Z, X if Z is None else None, y, n_per_class=n_labels, n_repeats=5)
    table[name] = [scores[n] for n in n_labels]
    print(f"{name:<24}" + "".join(f"{s:8.3f}" for s in table[name]))

# The pretext task is a hyper-parameter like any other.
pipe = make_pipeline(RotationSSL(), StandardScaler(), LogisticRegression(max_iter=2000))
search = GridSearchCV(
    pipe,
    {"rotationssl": [RotationSSL(max_epochs=1 if SMALL else 8, random_state=0),
                     SimCLR(max_epochs=1 if SMALL else 15, augment=digits_augment, random_state=0)]},
    cv=3,
)
start = time.perf_counter()
n_search = 150 if SMALL else 600
search.fit(X[:n_search], y[:n_search])
print(f"\nGridSearchCV over pretext tasks ({time.perf_counter() - start:.0f} s, {n_search} images, 3-fold):")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  {type(params['rotationssl']).__name__:<12} accuracy {score:.3f}")
print(f"  chosen: {type(search.best_params_['rotationssl']).__name__}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("\n(install matplotlib, or skssl[plots], to save a plot of the table)")
else:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, scores in table.items():
        ax.plot(n_labels, scores, marker="o", label=name)
    ax.set(xlabel="labelled images per class", ylabel="accuracy on the other images", xticks=n_labels,
           title="Digits: few-label linear probe")
    ax.grid(alpha=0.3)
    ax.legend()
    os.makedirs(OUT, exist_ok=True)
    fig.savefig(os.path.join(OUT, "quickstart.png"), dpi=120, bbox_inches="tight")
    print("\nplot saved to", os.path.relpath(os.path.join(OUT, "quickstart.png")))
