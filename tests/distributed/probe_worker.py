"""Run under torchrun (or alone): fit methods and record what every rank holds at every step.

argv: out_dir config_json. The config names ``methods``, shared ``params`` (random_state may be
null: the default), per-method ``overrides``, optionally ``stop``
(a step at which a checkpointed fit is stopped and then resumed) and optionally ``fail`` = [rank, step] to raise on that rank at that step.
Each rank writes probe<rank>.pt: per method, the training-set indices of every batch it trained
on, a fingerprint of the networks' state (one float64 sum per tensor) when each epoch starts, before the first
step and after every step (all before the final broadcast that makes every rank equal), and the
loss history.
"""

import json
import os
import sys
import time
import warnings

import torch

import skssl
from skssl.augment import Augment
from skssl.datasets import load_digits_images

torch.set_num_threads(1)
out, config = sys.argv[1], json.loads(sys.argv[2])
rank = int(os.environ.get("RANK", "0"))
SMALL = {
    "SimCLR": dict(projection_dim=16),
    "MoCo": dict(projection_dim=16, queue_size=64),
    "BYOL": dict(projection_dim=16, hidden_dim=32),
    "SimSiam": dict(projection_dim=16, predictor_hidden_dim=8),
    "BarlowTwins": dict(projection_dim=16),
    "VICReg": dict(projection_dim=16),
    "InstanceDiscriminationSSL": dict(projection_dim=16),
    "DeepClusterSSL": dict(n_clusters=8, pca_dim=8),
    "RotationSSL": {},
}
X = load_digits_images(return_X_y=True)[0][:config.get("n", 128)]
results = {}
for method in config["methods"]:
    cls = getattr(skssl, method)
    records = {"index": [], "state": [], "hook": []}

    def fingerprint(nets):
        return torch.stack([t.detach().double().sum() for t in nets.state_dict().values()])

    class Probed(cls):
        def _before_epoch(self, images, epoch):
            records["hook"].append(fingerprint(self.networks_))  # what the hook's eval-mode passes see
            super()._before_epoch(images, epoch)
            records.setdefault("initial", fingerprint(self.networks_))
            records.setdefault("names", list(self.networks_.state_dict()))

        def _after_step(self):
            super()._after_step()
            records["index"].append(self._batch_index.cpu())
            records["state"].append(fingerprint(self.networks_))

        def _loss(self, x):
            if self.checkpoint_dir and config.get("stop") == self._step and rank == 0:
                self._interrupted = True  # as Ctrl-C on rank 0: every process stops after this step
            if config.get("fail") == [rank, self._step]:
                with open(os.path.join(out, "failed_at"), "w") as f:
                    f.write(str(time.time()))
                raise RuntimeError(f"simulated failure on rank {rank} at step {self._step}")
            return super()._loss(x)

    Probed.__name__ = cls.__name__
    params = {**SMALL.get(method, {}), **config["params"], **config.get("overrides", {}).get(method, {})}
    if params.pop("augment", None) == "none":
        params["augment"] = Augment.none()
    est = Probed(**params).fit(X)
    results[method] = {**records, "history": [h["loss"] for h in est.history_]}
    if "stop" in config:  # stopped at step ``stop`` with a checkpoint, then resumed: as est, uninterrupted?
        checkpoint = dict(params, checkpoint_dir=os.path.join(out, "checkpoints"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped = Probed(**checkpoint).fit(X)
        resumed = Probed(**checkpoint).fit(X)
        results[method].update(final=fingerprint(est.networks_), resumed=fingerprint(resumed.networks_),
                               stopped_epochs=len(stopped.history_), resumed_history=[h["loss"] for h in resumed.history_])
torch.save(results, os.path.join(out, f"probe{rank}.pt"))
# The work is done and written. Leave without the interpreter's teardown, where gloo's threads can
# still abort a rank ("terminate called without an active exception", a few runs in a hundred).
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
