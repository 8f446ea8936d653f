"""Episodes for unsupervised meta-learning: the prototypical loss and pseudo-class sampling."""

import torch
import torch.nn.functional as F
from torch import nn


def prototypical_loss(support, query):
    """Prototypical-network loss and accuracy of a batch of episodes (Snell, Swersky & Zemel 2017).

    ``support`` is ``(episodes, n_way, k_shot, d)`` and ``query``
    ``(episodes, n_way, n_query, d)``, class ``j`` of an episode at index
    ``j`` of both. Each class's prototype is the mean of its support; the
    logits of a query are its negative squared Euclidean distances to the
    prototypes of its episode. Returns the mean cross entropy over all
    queries and their accuracy (a tensor, no host sync). Computed in fp32.
    """
    support, query = support.float(), query.float()
    episodes, n_way, n_query, _ = query.shape
    prototypes = support.mean(2)
    queries = query.reshape(episodes, n_way * n_query, -1)
    logits = -torch.cdist(queries, prototypes).pow(2)  # (episodes, n_way * n_query, n_way)
    targets = torch.arange(n_way, device=query.device).repeat_interleave(n_query).expand(episodes, -1)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    accuracy = (logits.argmax(-1) == targets).float().mean()
    return loss, accuracy


class PseudoLabels(nn.Module):
    """The k-means pseudo-class of every training image, as a buffer (-1: none yet).

    Kept in ``networks_`` so checkpoints, pickles and saved files carry it.
    """

    def __init__(self, n):
        super().__init__()
        self.register_buffer("labels", torch.full((n,), -1, dtype=torch.long))

    def __len__(self):
        return self.labels.shape[0]


class ClusterEpisodeSampler:
    """Draws N-way episodes of distinct images from distinct pseudo-classes (CACTUs).

    Only pseudo-classes with at least ``per_class`` members take part, as in
    Hsu, Levine & Finn (2019); ``n_way`` shrinks to the number of such
    classes when there are fewer. ``None`` from :meth:`sample` when fewer
    than two classes qualify.
    """

    def __init__(self, labels, per_class, seed):
        labels = labels.cpu()
        counts = torch.bincount(labels[labels >= 0])
        self.classes = torch.nonzero(counts >= per_class).flatten()
        self.per_class = per_class
        self.counts = counts[self.classes]
        width = int(self.counts.max()) if len(self.classes) else 0
        # members[i, :counts[i]]: the images of eligible class i; the padding is never drawn.
        self.members = torch.zeros((len(self.classes), width), dtype=torch.long)
        for i, c in enumerate(self.classes.tolist()):
            self.members[i, : self.counts[i]] = torch.nonzero(labels == c).flatten()
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n_episodes, n_way):
        """``(n_episodes, n_way', per_class)`` training-set indices, or ``None``."""
        if len(self.classes) < 2:
            return None
        n_way = min(n_way, len(self.classes))
        g = self.generator
        ways = torch.rand(n_episodes, len(self.classes), generator=g).argsort(1)[:, :n_way]
        keys = torch.rand(n_episodes, n_way, self.members.shape[1], generator=g)
        keys[torch.arange(self.members.shape[1]) >= self.counts[ways][..., None]] = 2.0
        picked = keys.topk(self.per_class, dim=2, largest=False).indices
        return torch.gather(self.members[ways], 2, picked)
