"""Predictive coding: predict the latents of future frames from a summary of the past (CPC, DPC)."""

from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..heads import mlp
from ..losses import fp32_loss
from ._base import VideoSSL


class _Predictor(nn.Module):
    """A GRU over past latents and one linear prediction per future step."""

    def __init__(self, dim, n_predict):
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.steps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_predict))

    def forward(self, past):
        _, context = self.gru(past)
        return torch.stack([step(context[-1]) for step in self.steps], 1)  # (b, k, dim)


@fp32_loss
def future_nce(predicted, future, temperature, steps_as_negatives=True):
    """InfoNCE of predicted against true future latents over the batch.

    The prediction ``predicted[i, k]`` must score the true latent
    ``future[i, k]`` above the step-``k`` latents of the other clips and, with
    ``steps_as_negatives``, above every other future latent in the batch too,
    the same clip's other steps included (DPC's negatives). Without those,
    a clip's appearance alone retrieves it among other clips, and nothing
    asks the prediction to say *when*.

    Parameters
    ----------
    predicted, future : Tensor of shape (n, k, d)
    temperature : float
    steps_as_negatives : bool, default=True
    """
    predicted, future = F.normalize(predicted, dim=-1), F.normalize(future, dim=-1)
    n, k = predicted.shape[:2]
    if steps_as_negatives:
        logits = predicted.flatten(0, 1) @ future.flatten(0, 1).T / temperature  # (n k, n k)
        return F.cross_entropy(logits, torch.arange(n * k, device=predicted.device))
    logits = torch.einsum("ikd,jkd->kij", predicted, future) / temperature
    targets = torch.arange(n, device=predicted.device).expand(k, -1)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class PredictiveCodingSSL(VideoSSL):
    """Predictive coding in latent space (CPC / DPC).

    After Oord, Li & Vinyals's contrastive predictive coding (2018) and Han,
    Xie & Zisserman's dense predictive coding for video (2019): a frame
    encoder (the backbone and a projection) maps each of ``n_frames`` frames
    to a latent; a GRU summarises the first ``n_frames - n_predict`` latents
    and a linear map per step predicts each of the next ``n_predict``
    latents. InfoNCE scores the prediction for step ``k`` against the true
    latents at step ``k`` of every clip in the batch (gathered over torchrun
    processes). DPC predicts latents of short clips; here each latent is one
    frame's, as in CPC.

    Parameters
    ----------
    n_frames : int, default=8
        Frames per sampled clip: the context and the predicted future.
    n_predict : int, default=3
        Future steps predicted (k = 1..n_predict).
    latent_dim : int, default=128
        Width of a frame's latent (the projection's output).
    temperature : float, default=0.1
        Softmax temperature of InfoNCE over the clips of a batch.
    negatives : {"clips+steps", "clips"}, default="clips+steps"
        What a prediction is scored against besides its true latent: every
        other future latent of the batch, the same clip's other steps
        included (DPC), or only the other clips' latents at the same step
        (CPC across a batch), which appearance alone can tell apart.
    {video_parameters}
    {common_parameters}

    Attributes
    ----------
    {video_attributes}
    {common_attributes}

    Examples
    --------
    >>> from skssl import PredictiveCodingSSL
    >>> from skssl.datasets import make_moving_images
    >>> clips = make_moving_images(n_videos=64, n_frames=8, size=16, random_state=0).clips
    >>> PredictiveCodingSSL(max_epochs=1, batch_size=32, random_state=0).fit_transform(clips).shape
    (64, 128)
    """

    _params = {"n_frames": 8, "n_predict": 3, "latent_dim": 128, "temperature": 0.1, "negatives": "clips+steps",
               "max_epochs": 20, "batch_size": 64}
    _parameter_constraints = {
        **VideoSSL._parameter_constraints,
        "n_frames": [Interval(Integral, 2, None, closed="left")],
        "n_predict": [Interval(Integral, 1, None, closed="left")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "negatives": [StrOptions({"clips+steps", "clips"})],
    }

    def _check_input_params(self):
        if self.n_predict >= self.n_frames:
            raise ValueError(f"n_predict={self.n_predict} leaves no context frames: it must be smaller than "
                             f"n_frames={self.n_frames}.")
        super()._check_input_params()

    def _build_heads(self, feature_dim):
        return {"latent": mlp(feature_dim, feature_dim, self.latent_dim),
                "predictor": _Predictor(self.latent_dim, self.n_predict)}

    def _predict_future(self, x):
        """Predicted and true future latents ``(b, n_predict, latent_dim)`` of sampled clips."""
        clips = self._take(x, self._frame_index(x.shape[0], self.n_frames))
        z = self.networks_["latent"](self._encode_frames(clips).flatten(0, 1)).unflatten(0, clips.shape[:2])
        context = self.n_frames - self.n_predict
        with torch.autocast(x.device.type, enabled=False):  # the GRU's recurrence in fp32
            predicted = self.networks_["predictor"](z[:, :context].float())
        return predicted, z[:, context:]

    def _loss(self, x):
        predicted, future = self._predict_future(x)
        return future_nce(self._gather(predicted), self._gather(future), self.temperature,
                          steps_as_negatives=self.negatives == "clips+steps")

    def pretext_score(self, X, batch_size=64):
        """Top-1 retrieval of the next frame's latent among the clips of a batch (chance: 1/batch_size).

        Clips are taken ``batch_size`` at a time (the last batch may be
        smaller, which makes it easier) with fixed seeded frames.

        Parameters
        ----------
        X : array-like of clips
            Clips as ``fit`` takes them: ``(n, t, h, w)``, ``(n, t, h, w, c)``
            or ``(n, t*h*w*c)`` rows.
        batch_size : int, default=64
            Clips among which the next frame's latent is retrieved.

        Returns
        -------
        float
            The fraction of clips whose next latent is retrieved first.
        """
        def correct(x):
            predicted, future = self._predict_future(x)
            scores = F.normalize(predicted[:, 0], dim=1) @ F.normalize(future[:, 0], dim=1).T
            return (scores.argmax(1) == torch.arange(x.shape[0], device=x.device)).float()

        return float(np.mean(self._score_batches(X, correct, batch_size)))

    def step_score(self, X):
        """Top-1 choice of the right step among a clip's own future latents (chance: 1 / n_predict).

        For each clip and each future step, whether the prediction scores
        that step's true latent above the clip's other future latents: it
        asks *when*, which appearance cannot answer. Frames are fixed and
        seeded, as in ``pretext_score``.

        Parameters
        ----------
        X : array-like of shape (n, t, h, w), (n, t, h, w, c) or (n, t*h*w*c)
            Clips, as for ``transform``.

        Returns
        -------
        float
            The fraction of (clip, step) predictions that pick their own step.
        """
        def correct(x):
            predicted, future = self._predict_future(x)
            scores = F.normalize(predicted, dim=-1) @ F.normalize(future, dim=-1).transpose(1, 2)  # (b, k, k)
            return (scores.argmax(-1) == torch.arange(self.n_predict, device=x.device)).float().mean(1)

        return float(np.mean(self._score_batches(X, correct)))
