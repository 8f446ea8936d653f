"""Run under torchrun (or alone): fit a method on digits and save what every rank ends with.

argv: out_dir method augment(none|default) [checkpoint_dir max_epochs]
Each rank writes rank<r>.pt with its networks' state_dict, its transform of X and its history.
"""

import os
import sys

import torch

import skssl
from skssl.augment import Augment
from skssl.datasets import load_digits_images

torch.set_num_threads(1)
out, method, augment = sys.argv[1], sys.argv[2], sys.argv[3]
checkpoint_dir = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
max_epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 2
X = load_digits_images(return_X_y=True)[0][:128]
params = dict(max_epochs=max_epochs, batch_size=32, random_state=0, sync_batchnorm=True, checkpoint_dir=checkpoint_dir)
if augment == "none":  # and SGD: AdamW turns float noise in near-zero gradients into lr-sized steps
    params.update(augment=Augment.none(), optimizer="sgd", lr=0.05)
cls = getattr(skssl, method)
est = cls(**params)
if os.environ.get("SKSSL_LOG_EPOCHS"):
    log = os.environ["SKSSL_LOG_EPOCHS"]

    class Logged(cls):
        def _before_epoch(self, images, epoch):
            super()._before_epoch(images, epoch)
            with open(log, "a") as f:
                f.write(f"{epoch}\n")

    Logged.__name__ = cls.__name__
    est = Logged(**params)
est.fit(X)
Z = est.transform(X)
rank = int(os.environ.get("RANK", "0"))
torch.save({"state": {k: v.cpu() for k, v in est.networks_.state_dict().items()}, "Z": torch.from_numpy(Z),
            "history": [h["loss"] for h in est.history_],
            "bn": sorted({type(m).__name__ for m in est.networks_.modules() if "Norm" in type(m).__name__})},
           os.path.join(out, f"rank{rank}.pt"))
# The work is done and written. Leave without the interpreter's teardown, where gloo's threads can
# still abort a rank ("terminate called without an active exception", a few runs in a hundred).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
