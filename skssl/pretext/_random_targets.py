"""Random pretext targets: the random-label baseline of a classification pretext.

Wallace & Hariharan ("Extending and Analyzing Self-Supervised Learning Across
Domains", ECCV 2020) train a pretext on the images it induces (rotated copies,
shuffled tiles, tile pairs) with labels that carry no meaning, to measure how
much of a pretext's transfer comes from that induced distribution alone. With
``shuffle_pretext_targets=True`` each training image gets its own fixed random
permutation of the pretext's labels, drawn once from the fit's seed: the
network sees exactly the inputs of the real task, the targets stay balanced,
and the mapping from an image to its targets is the same in every epoch, but
it means nothing across images, so the only way to fit it is to memorise.
"""

import torch
from torch import nn


class RandomTargets(nn.Module):
    """One fixed random permutation of ``n_labels`` pretext labels per training image (a buffer)."""

    def __init__(self, n_images, n_labels, generator=None):
        super().__init__()
        device = generator.device if generator is not None else None
        keys = torch.rand(n_images, n_labels, generator=generator, device=device)
        self.register_buffer("table", keys.argsort(dim=1).to(torch.int16 if n_labels <= 2**15 else torch.int32))

    def forward(self, labels, index):
        """The random targets of true pretext ``labels`` of training images ``index`` (same shape)."""
        return self.table[index, labels].long()


def random_target_heads(estimator, n_labels):
    """``{"random_targets": ...}`` for ``_build_heads`` when ``shuffle_pretext_targets`` is on, else ``{}``."""
    if not estimator.shuffle_pretext_targets:
        return {}
    return {"random_targets": RandomTargets(estimator._n_train, n_labels)}


def pretext_targets(estimator, labels, n_labels, label_images=None):
    """The targets a classification pretext trains on: ``labels``, or their random replacements.

    ``label_images`` maps the batch's training-set indices (``_batch_index``)
    to the index of the image each label belongs to (default: one label per
    image). ``_batch_index`` is only read when the targets are shuffled, so
    the real task's loss stays defined on images outside the training set. A
    warm start on another training set (or with the option switched on) gets
    a table that fits it, drawn from the fit's generator.
    """
    nets = estimator.networks_
    if not estimator.shuffle_pretext_targets:
        if "random_targets" in nets:  # a warm start that switched the option off
            del nets["random_targets"]
        return labels
    table = nets["random_targets"].table if "random_targets" in nets else None
    if table is None or table.shape != (estimator._n_train, n_labels):
        nets["random_targets"] = RandomTargets(estimator._n_train, n_labels, estimator._generator)
    index = estimator._batch_index
    return nets["random_targets"](labels, index if label_images is None else label_images(index))
