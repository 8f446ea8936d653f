"""Video methods on generated clips: pretext scores, what a linear probe reads, and speed.

Clips from :func:`skssl.datasets.make_moving_images` (digits moving over a
32 px canvas, one object, 8 directions, 2 speeds). Every method pretrains
on the first ``--train`` clips without labels; the last ``--test`` clips are
held out. Reported per method:

- its pretext score on held-out clips where it has one (frame order:
  accuracy, chance 0.5; predictive coding: top-1 retrieval of the next
  frame's latent among 64 clips, chance 1/64);
- linear probes (StandardScaler + LogisticRegression, trained on the
  training clips' labels, tested on the held-out clips) for the direction
  of motion (8 classes) and the object class (10 digits), on video
  embeddings pooled with ``pooling="mean+diff"``;
- the same direction probe and frame-order score on the clips whose object
  never reflects off a wall (``bounced`` is False): the label is the
  *initial* direction, which a bounce changes for the rest of the clip
  (at 32 px, 12 frames, about three clips in four bounce);
- the direction probe and frame-order score on a second set of clips made
  with ``bounce=False`` (``--free-train`` probe-training and ``--free-test``
  held-out clips, another seed; the same embeddings, trained on the bouncing
  clips), where every clip moves one way from start to end, so the label
  is the direction of the whole clip; their fastest speed is the fastest
  that crosses the canvas without a wall in ``--frames`` frames (1.8 px per
  frame at 32 px and 12 frames, against 2 in training);
- fit seconds and clips per second of training.

``--throughput`` instead times every video method alone: one untimed
warm-up epoch, then a timed training epoch and a timed ``transform`` over
the same clips (clips per second), written to ``video_throughput_cpu.json``.

Ablations: FrameOrderSSL with ``grid=1`` (its order head on globally
pooled frames, the first version) and with three times the epochs;
PredictiveCodingSSL with ``negatives="clips"``.

Baselines: SimCLR trained on single frames (two per training clip) and an
untrained backbone (RandomInit), their frame embeddings pooled the same way.
Every network is the same small CNN (width 16), built from one seed.

    python benchmarks/video.py                     # writes results/video_cpu.json
    python benchmarks/report.py                    # adds it to docs/benchmarks.md
"""

import argparse
import json
import math
import os
import sys
import platform
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skssl
from skssl.backbones import SmallCNN
from skssl.baselines import RandomInit
from skssl.datasets import make_moving_images

RESULTS = os.path.join(os.path.dirname(__file__), "results")


# The video methods as both runs build them.
VIDEO_DEFAULTS = {
    "FrameOrderSSL": lambda common: skssl.FrameOrderSSL(n_frames=8, **common),
    "TemporalContrastiveSSL": lambda common: skssl.TemporalContrastiveSSL(max_offset=3, **common),
    "TemporalClassificationSSL": lambda common: skssl.TemporalClassificationSSL(n_segments=4, n_frames=2, **common),
    "PredictiveCodingSSL": lambda common: skssl.PredictiveCodingSSL(n_frames=8, n_predict=3, **common),
}


def backbone(width):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SmallCNN(in_channels=1, width=width)


def pool(frames):
    """mean+diff pooling of (n, t, d) frame embeddings, as VideoSSL's transform does."""
    return np.concatenate([frames.mean(1), np.diff(frames, axis=1).mean(1)], 1)


def probe(Z_train, y_train, Z_test, y_test):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return round(float(model.fit(Z_train, y_train).score(Z_test, y_test)), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16, help="small CNN width")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--free-train", type=int, default=1000, help="bounce-free probe-training clips")
    parser.add_argument("--free-test", type=int, default=500, help="bounce-free held-out clips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--throughput", action="store_true", help="time training and transform per method")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.throughput:
        return throughput(args)
    args.out = args.out or "video_cpu"

    data = make_moving_images(args.train + args.test, args.frames, args.size, random_state=0)
    clips, train, test = data.clips, slice(0, args.train), slice(args.train, None)
    room = args.size - args.size * 3 // 8
    fastest = min(2.0, math.floor(10 * room / (args.frames - 1)) / 10)
    free = make_moving_images(args.free_train + args.free_test, args.frames, args.size, speeds=(1.0, fastest),
                              bounce=False, random_state=1)
    free_train, free_test = slice(0, args.free_train), slice(args.free_train, None)
    common = dict(max_epochs=args.epochs, random_state=0)
    video = {name: (lambda make=make: make(common)) for name, make in VIDEO_DEFAULTS.items()}
    # Ablation: the order head on globally pooled frames (the first version), and a longer fit.
    video["FrameOrderSSL (grid=1)"] = lambda: VIDEO_DEFAULTS["FrameOrderSSL"](dict(common, grid=1))
    video[f"FrameOrderSSL ({3 * args.epochs} epochs)"] = lambda: VIDEO_DEFAULTS["FrameOrderSSL"](
        dict(common, max_epochs=3 * args.epochs))
    # Ablation: CPC's negatives before they included the clip's own other steps.
    video["PredictiveCodingSSL (negatives=clips)"] = lambda: VIDEO_DEFAULTS["PredictiveCodingSSL"](
        dict(common, negatives="clips"))
    names = args.methods or ["RandomInit", "SimCLR (frames)", *video]
    path = os.path.join(RESULTS, f"{args.out}.json")
    result = {
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), shared 2-core machine",
        "torch": torch.__version__,
        "setup": (f"make_moving_images(digits): {args.train} training and {args.test} held-out clips of "
                  f"{args.frames} frames, {args.size}x{args.size} px; small CNN width {args.width}; "
                  f"{args.epochs} epochs, default batch sizes; probes on mean+diff pooled embeddings; "
                  f"chance: direction 0.125, class 0.1, frame order 0.5, next-latent retrieval 1/64; bounce-free "
                  f"probe set: make_moving_images(bounce=False, speeds=(1.0, {fastest}), random_state=1), "
                  f"{args.free_train} probe-training and {args.free_test} held-out clips"),
        "run": (" ".join(["python", *sys.argv]) + ": one process, the methods one after the other; load: the "
                "1-minute load average when the row was written (other engineers' jobs share the 2 cores)"),
        "rows": [],
        "clips without a bounce": f"{int((~data.bounced[train]).sum())} training, {int((~data.bounced[test]).sum())} "
                                  "held-out",
    }
    if args.methods and os.path.exists(path):
        with open(path) as f:
            result["rows"] = [r for r in json.load(f)["rows"] if r["method"] not in names]
    for name in names:
        start = time.perf_counter()
        row = {"method": name}
        if name == "RandomInit":
            model = RandomInit(backbone=backbone(args.width), random_state=0)
            model.fit(clips[train, 0])
            frames_of = lambda X: model.transform(X.reshape(-1, *X.shape[2:])).reshape(len(X), X.shape[1], -1)
            fit_s = time.perf_counter() - start
        elif name == "SimCLR (frames)":
            rng = np.random.default_rng(0)
            picked = clips[train][np.arange(args.train)[:, None], rng.integers(0, args.frames, (args.train, 2))]
            model = skssl.SimCLR(backbone=backbone(args.width), **common).fit(picked.reshape(-1, args.size, args.size))
            fit_s = time.perf_counter() - start
            frames_of = lambda X: model.transform(X.reshape(-1, *X.shape[2:])).reshape(len(X), X.shape[1], -1)
        else:
            model = video[name]().set_params(backbone=backbone(args.width)).fit(clips[train])
            fit_s = time.perf_counter() - start
            frames_of = model.transform_frames
            row["clips_per_s"] = round(args.train * model.max_epochs / fit_s, 1)
            if hasattr(model, "pretext_score"):
                row["pretext_held_out"] = round(model.pretext_score(clips[test]), 3)
        Z_train, Z_test = pool(frames_of(clips[train])), pool(frames_of(clips[test]))
        row["direction"] = probe(Z_train, data.direction[train], Z_test, data.direction[test])
        clean_train, clean_test = ~data.bounced[train], ~data.bounced[test]
        row["direction_no_bounce"] = probe(Z_train[clean_train], data.direction[train][clean_train],
                                           Z_test[clean_test], data.direction[test][clean_test])
        if name.startswith("FrameOrderSSL"):
            row["pretext_no_bounce"] = round(model.pretext_score(clips[test][clean_test]), 3)
            row["pretext_bounce_free"] = round(model.pretext_score(free.clips[free_test]), 3)
        F_train, F_test = pool(frames_of(free.clips[free_train])), pool(frames_of(free.clips[free_test]))
        row["direction_bounce_free"] = probe(F_train, free.direction[free_train], F_test, free.direction[free_test])
        row["class"] = probe(Z_train, data.target[train], Z_test, data.target[test])
        row["fit_s"] = round(fit_s, 1)
        row["load"] = round(os.getloadavg()[0], 1)
        result["rows"].append(row)
        print(row, flush=True)
        os.makedirs(RESULTS, exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def throughput(args):
    """Training and transform clips/s of every video method alone, after an untimed warm-up epoch."""
    clips = make_moving_images(args.train, args.frames, args.size, random_state=0).clips
    names = args.methods or list(VIDEO_DEFAULTS)
    rows = []
    for name in names:
        model = VIDEO_DEFAULTS[name](dict(max_epochs=1, random_state=0, warm_start=True))
        model.set_params(backbone=backbone(args.width)).fit(clips)  # warm-up
        start = time.perf_counter()
        model.fit(clips)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        model.transform(clips)
        transform_s = time.perf_counter() - start
        rows.append({"method": name, "train clips/s": round(len(clips) / fit_s, 1),
                     "transform clips/s": round(len(clips) / transform_s, 1)})
        print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), shared 2-core machine",
        "torch": torch.__version__,
        "setup": (f"{args.train} clips of {args.frames} frames, {args.size}x{args.size} px, small CNN width "
                  f"{args.width}, default batch sizes and method parameters as in the quality run; one untimed "
                  "warm-up epoch, then one timed training epoch and one timed transform (all frames)"),
        "load": f"1-minute load average {load:.1f} at the end (other jobs share the cores)" if load else "",
        "rows": rows,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{args.out or 'video_throughput_cpu'}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
