"""
MAE: hide 75% of each image and look at what the model fills in
================================================================

MAE on Fashion-MNIST.

Fits a masked autoencoder on Fashion-MNIST training images (the 8x8 digits
when Fashion-MNIST is not installed), then saves a grid to
examples/output/mae_reconstruction.png: held-out test images (top row), the
same images with 75% of their patches hidden (middle), and the model's
reconstruction, visible patches kept and hidden ones predicted (bottom).

The ViT is smaller than ViT-Tiny so that the fit takes a few minutes on a
laptop CPU (seconds on a GPU). As for the paper's own figures, the model
predicts raw pixels (``norm_pix_loss=False``): per-patch normalised targets
transfer better, but their reconstructions have to guess each patch's
brightness and contrast separately. Run it with::

    python examples/mae_reconstruction.py

The documentation site runs it at small settings (``SKSSL_EXAMPLE_SIZE=small``:
1 epoch on 500 images), whose reconstructions are blurrier.
"""

import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skssl import MAE, load_digits_images, load_fashion_mnist  # noqa: E402
from skssl._vit import auto_patch_size  # noqa: E402
from skssl.backbones import VisionTransformer  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "output", "mae_reconstruction.png")
# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"
N_SHOW = 10

try:
    X_train = load_fashion_mnist(subset="train", return_X_y=True, download=False)[0][:5_000]
    X_test = load_fashion_mnist(subset="test", return_X_y=True, download=False)[0]
    name = "Fashion-MNIST"
except OSError:
    X, _ = load_digits_images(return_X_y=True)
    X_train, X_test, name = X[:1500], X[1500:], "digits"
if SMALL:
    X_train = X_train[:500]
print(f"{name}: training on {len(X_train):,} images of {X_train.shape[1]}x{X_train.shape[2]} pixels")

# 4 px patches at 28 px (2 px for the digits): 49 patches, 12 of them visible.
vit = VisionTransformer(patch_size=auto_patch_size(X_train.shape[1:3]), embed_dim=64, depth=4, num_heads=4)
mae = MAE(backbone=vit, norm_pix_loss=False, decoder_dim=64, decoder_depth=1, max_epochs=1 if SMALL else 15,
          batch_size=64, lr=2e-3, random_state=0)
start = time.perf_counter()
mae.fit(X_train)
print(f"fitted {len(mae.history_)} epochs in {time.perf_counter() - start:.0f} s; "
      f"masked-patch loss {mae.history_[0]['loss']:.3f} -> {mae.history_[-1]['loss']:.3f}")

# Held-out error on the hidden pixels, next to predicting the training set's mean image there.
shown = X_test[:N_SHOW]
images, hidden = mae.reconstruct(X_test[:1000], random_state=0, return_mask=True)
truth = X_test[:1000].reshape(images.shape).astype(np.float32)
mean_image = X_train.reshape((-1,) + images.shape[1:]).mean(0)
model_error = float(((images - truth)[..., 0][hidden] ** 2).mean())
mean_error = float(((mean_image - truth)[..., 0][hidden] ** 2).mean())
print(f"held-out squared error on hidden pixels: MAE {model_error:.0f}, mean image {mean_error:.0f}")

fig, axes = plt.subplots(3, N_SHOW, figsize=(N_SHOW * 1.1, 3.6))
high = 255 if X_test.dtype == np.uint8 else X_test.max()
masked = np.where(hidden[:N_SHOW, ..., None], np.nan, truth[:N_SHOW])
cmap = plt.get_cmap("gray").copy()
cmap.set_bad("#c03030")  # hidden patches in red
for j in range(N_SHOW):
    for i, (row, title) in enumerate([(truth, "original"), (masked, "75% hidden"), (images, "MAE")]):
        ax = axes[i, j]
        ax.imshow(row[j, ..., 0], cmap=cmap, vmin=0, vmax=high, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel(title, fontsize=9)
fig.suptitle(f"MAE on {name}: held-out images, {len(mae.history_)} epochs on {len(X_train):,} images", fontsize=10)
fig.tight_layout()
os.makedirs(os.path.dirname(OUT), exist_ok=True)
fig.savefig(OUT, dpi=110)
print("wrote", OUT)
