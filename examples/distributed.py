"""
Data-parallel pretraining with torchrun
=======================================

The same script on 1 process, 8 GPUs or many machines::

    python examples/distributed.py                                   # one process
    torchrun --standalone --nproc_per_node=2 examples/distributed.py # 2 processes on this machine
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29500 examples/distributed.py      # 2 machines x 8 GPUs

Nothing in the estimator changes: ``fit`` finds torchrun's environment,
joins the process group (nccl on CUDA, gloo on the CPU) and trains with
DistributedDataParallel. ``batch_size`` is the global batch; every process
ends with the same weights, so any of them can transform or save. The
documentation site runs it in one process at small settings
(``SKSSL_EXAMPLE_SIZE=small``: 1 epoch on 300 digits).
"""

import os
import sys
import time

import torch

from skssl import SimCLR, few_label_score, load_digits_images
from skssl.augment import Augment

rank = int(os.environ.get("RANK", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1 and not torch.cuda.is_available():
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # share the CPU cores

# The docs gallery runs every example at small settings (docs/conf.py sets this).
SMALL = os.environ.get("SKSSL_EXAMPLE_SIZE") == "small"
# The script's folder (sphinx-gallery, which runs the examples for the docs, defines no __file__).
OUT = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "output")

X, y = load_digits_images(return_X_y=True)
if SMALL:
    X, y = X[:300], y[:300]
model = SimCLR(
    max_epochs=1 if SMALL else 20, batch_size=256, random_state=0,
    augment=Augment(crop_scale=(0.3, 1.0), flip_p=0.0, degrees=15, saturation=0.0, grayscale_p=0.0),
    sync_batchnorm=True,                     # BatchNorm over the global batch
    checkpoint_dir=os.path.join(OUT, "ckpt"),  # rank 0 writes; a restarted run resumes
)
start = time.perf_counter()
model.fit(X)
seconds = time.perf_counter() - start
Z = model.transform(X)  # each process embeds a shard; all get the whole result
if rank == 0:
    scores = few_label_score(Z, None, y, n_per_class=(1, 5, 10))
    print(f"{world} process(es): fit {seconds:.1f} s, few-label accuracy "
          + ", ".join(f"{k}/class {v:.3f}" for k, v in scores.items()))
    model.save(os.path.join(OUT, "simclr_digits.skssl"))
    try:
        from skssl.plotting import plot_history
    except ImportError:
        pass
    else:
        plot_history(model)
if torch.distributed.is_initialized():  # fit joined (or started) the group; the script ends it
    torch.distributed.destroy_process_group()
