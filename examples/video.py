"""
Video in five steps
===================

Make clips, train a temporal method, look at the frames, probe the embedding::

    python examples/video.py                 # about 2 minutes on 2 CPU cores
    python examples/video.py --clips 3000 --epochs 10

Writes video_frames.png (a strip of frames from four clips) and prints a
table: how well a linear probe reads the direction of motion and the
object's class from the trained embedding and from an untrained backbone.
The documentation site runs it at small settings (``SKSSL_EXAMPLE_SIZE=small``:
200 clips of 8 frames, 1 epoch).
"""

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skssl import TemporalContrastiveSSL  # noqa: E402
from skssl.baselines import RandomInit  # noqa: E402
from skssl.datasets import make_moving_images  # noqa: E402


# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200 if SMALL else 1200)
    parser.add_argument("--frames", type=int, default=8 if SMALL else 12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1 if SMALL else 5)
    parser.add_argument("--out", default="video_frames.png")
    args = parser.parse_args()

    # 1. Clips of real digits moving and bouncing, with labels for what moves and how.
    data = make_moving_images(args.clips, args.frames, args.size, random_state=0)
    clips = data.clips  # (n, t, h, w) uint8
    n_train = int(0.75 * len(clips))

    # 2. A strip of frames to see what the network sees.
    fig, axes = plt.subplots(4, args.frames, figsize=(args.frames * 0.9, 4 * 0.95))
    for row in range(4):
        for t in range(args.frames):
            axes[row, t].imshow(clips[row, t], cmap="gray", vmin=0, vmax=255)
            axes[row, t].axis("off")
        axes[row, 0].set_title(f"{data.target[row]}, {data.direction_names[data.direction[row]]}",
                               fontsize=7, loc="left")
    fig.tight_layout()
    if SMALL:  # the gallery shows the figure; keep the working tree clean
        args.out = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "output", "video_frames.png")
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print("wrote", args.out)

    # 3. Train on the unlabelled training clips: nearby frames are positives.
    model = TemporalContrastiveSSL(max_offset=3, pooling="mean+diff", max_epochs=args.epochs,
                                   backbone="small_cnn", random_state=0, verbose=True)
    model.fit(clips[:n_train])

    # 4. The same pooling over an untrained backbone's frames, as the floor.
    floor = RandomInit(backbone="small_cnn", random_state=0).fit(clips[:n_train, 0])

    def untrained(X):
        z = floor.transform(X.reshape(-1, *X.shape[2:])).reshape(len(X), X.shape[1], -1)
        return np.concatenate([z.mean(1), np.diff(z, axis=1).mean(1)], 1)

    # 5. Linear probes on held-out clips.
    print(f"\n{'embedding':<28}{'direction (8)':>14}{'class (10)':>12}")
    for name, embed in (("TemporalContrastiveSSL", model.transform), ("untrained backbone", untrained)):
        Z_train, Z_test = embed(clips[:n_train]), embed(clips[n_train:])
        scores = []
        for y in (data.direction, data.target):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
            scores.append(probe.fit(Z_train, y[:n_train]).score(Z_test, y[n_train:]))
        print(f"{name:<28}{scores[0]:>14.3f}{scores[1]:>12.3f}")


if __name__ == "__main__":
    main()
