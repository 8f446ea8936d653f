"""Synthetic-to-real transfer: render time, and what SyntheticTransferSSL learns on Fashion-MNIST.

render   : seconds to render ``--render-n`` 32x32 RGB scenes with
           skssl.datasets.make_synthetic_scenes on one CPU thread.
fashion  : SyntheticTransferSSL fitted on ``--n-train`` Fashion-MNIST
           training images (the real set; grayscale renders of 28 px, as
           many as real images) for ``--epochs`` epochs, once per
           ``--weights`` value of adversarial_weight (0: no domain loss),
           same seed and budget. Each row: a linear probe (StandardScaler +
           LogisticRegression) trained on the embeddings of those training
           images with their labels and tested on ``--n-test`` test images;
           the domain discriminator's balanced accuracy on held-out test
           images against fresh renders (chance 0.5); the mean per-image
           Spearman correlation of predicted and true depth on 500 held-out
           synthetic scenes, and the mean angle between predicted and true
           normals there. An untrained backbone (RandomInit) is the floor.
           ``--domain-loss`` chooses the adversarial objective.
paired   : the domain loss's effect with its noise: for each of ``--seeds``,
           a seeded sample of ``--n-train`` training images and one fit per
           ``--weights`` value from that seed (so each seed pairs the
           weights on the same images and initialisation). Per fit: the
           linear probe as above; the model's own discriminator's balanced
           accuracy on held-out real images against fresh renders; and the
           domain *separability* of the features, the 5-fold accuracy of a
           fresh logistic regression telling those same embeddings apart
           (0.5 = aligned domains). A fooled discriminator and aligned
           features are different claims; this row tells them apart.
           Writes results/synthetic_paired.json with the mean paired
           difference of the probe and its standard error.

Each ``--weights`` value can run in its own process (``--part``), writing
results/synthetic_part_<w>.json; ``--merge`` joins the parts into
results/synthetic_fashion.json. Without ``--part`` everything runs in one
process and the merged file is written directly.

    python benchmarks/synthetic.py render
    python benchmarks/synthetic.py fashion --n-train 2000 --epochs 3 --threads 1
    python benchmarks/synthetic.py fashion --weights 0 --part   # then --weights 1 --part, then --merge
    python benchmarks/synthetic.py fashion --weights 1 --domain-loss reversal --part
    python benchmarks/synthetic.py paired --seeds 1 2 3 --weights 0 1
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import skssl  # noqa: E402
from skssl.baselines import RandomInit  # noqa: E402
from skssl.datasets import make_synthetic_scenes  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def machine():
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"


def render(n):
    make_synthetic_scenes(100, 32, random_state=1)  # imports and first-call costs
    start = time.perf_counter()
    cpu = time.process_time()
    make_synthetic_scenes(n, 32, random_state=0)
    return {"scenes": n, "size": 32, "seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2), "machine": machine(), "torch": torch.__version__}


def data(n_train, n_test):
    X, y = skssl.load_fashion_mnist(subset="train", return_X_y=True)
    X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
    idx = np.random.RandomState(0).permutation(len(X))[:n_train]
    return X[idx], y[idx], X_test[:n_test], y_test[:n_test], X_test[n_test:n_test + 1000]


def row(est, X, y, X_test, y_test, X_domain, held_out):
    Z, Z_test = est.transform(X), est.transform(X_test)
    out = {"linear_probe": skssl.linear_probe_score(None, Z, y, X_test=Z_test, y_test=y_test)}
    if isinstance(est, skssl.SyntheticTransferSSL):
        maps = est.predict_maps(held_out.images)
        rho = [spearmanr(p.ravel(), t.ravel())[0] for p, t in zip(maps["depth"], held_out.depth)]
        cos = np.clip((maps["normals"] * held_out.normals).sum(-1), -1, 1)
        out.update(domain_accuracy=est.domain_score(X_domain, random_state=7), depth_spearman=float(np.mean(rho)),
                   normals_angle_degrees=float(np.degrees(np.arccos(cos)).mean()),
                   loss_curve=[round(v, 4) for v in est.loss_curve_])
    return out


def fashion(weights, n_train, n_test, epochs, batch_size, random_state, domain_loss, baseline=True):
    X, y, X_test, y_test, X_domain = data(n_train, n_test)
    held_out = make_synthetic_scenes(500, 28, random_state=12345, channels=1)
    rows = {}
    if baseline:
        start = time.perf_counter()
        rows["RandomInit"] = {**row(RandomInit(random_state=random_state).fit(X), X, y, X_test, y_test, X_domain,
                                    held_out), "fit_seconds": time.perf_counter() - start}
    for weight in weights:
        est = skssl.SyntheticTransferSSL(adversarial_weight=weight, domain_loss=domain_loss, max_epochs=epochs,
                                         batch_size=batch_size, random_state=random_state)
        start, cpu = time.perf_counter(), time.process_time()
        est.fit(X)
        fit = {"fit_seconds": time.perf_counter() - start, "fit_cpu_seconds": time.process_time() - cpu}
        name = f"adversarial_weight={weight:g}" + (f", domain_loss={domain_loss!r}" if weight > 0 else "")
        rows[f"SyntheticTransferSSL({name})"] = {**row(est, X, y, X_test, y_test, X_domain,
                                                                             held_out), **fit}
        print(json.dumps({k: v for k, v in rows.items()}, indent=1), flush=True)
    config = {"n_train": n_train, "n_test": n_test, "epochs": epochs, "batch_size": batch_size,
              "random_state": random_state, "synthetic": "as many grayscale 28 px renders as real images",
              "held_out_synthetic": 500, "domain_held_out_real": len(X_domain), "machine": machine()}
    return {"config": config, "rows": rows}


def paired(seeds, weights, n_train, n_test, epochs, batch_size, domain_loss):
    X_all, y_all = skssl.load_fashion_mnist(subset="train", return_X_y=True)
    X_test, y_test = skssl.load_fashion_mnist(subset="test", return_X_y=True)
    X_test, y_test, X_domain = X_test[:n_test], y_test[:n_test], X_test[n_test:n_test + 1000]
    fake = make_synthetic_scenes(len(X_domain), X_all.shape[1], channels=1, random_state=7).images
    domain = np.r_[np.zeros(len(X_domain)), np.ones(len(fake))]
    rows = []
    for seed in seeds:
        idx = np.random.RandomState(seed).permutation(len(X_all))[:n_train]
        X, y = X_all[idx], y_all[idx]
        for weight in weights:
            est = skssl.SyntheticTransferSSL(adversarial_weight=weight, domain_loss=domain_loss, max_epochs=epochs,
                                             batch_size=batch_size, random_state=seed).fit(X)
            Z, Z_test = est.transform(X), est.transform(X_test)
            Z_domain = np.concatenate([est.transform(X_domain), est.transform(fake)])
            separability = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                           Z_domain, domain, cv=5).mean()
            rows.append({"seed": seed, "adversarial_weight": weight,
                         "linear_probe": round(skssl.linear_probe_score(None, Z, y, X_test=Z_test, y_test=y_test), 4),
                         "discriminator_accuracy": round(est.domain_score(X_domain, synthetic=fake), 4),
                         "domain_separability": round(float(separability), 4)})
            print(rows[-1], flush=True)
    config = {"seeds": seeds, "weights": weights, "n_train": n_train, "n_test": n_test, "epochs": epochs,
              "batch_size": batch_size, "domain_loss": domain_loss, "machine": machine()}
    return {"machine": machine(), "torch": torch.__version__, "config": config, "rows": rows,
            "summary": paired_summary(rows, weights)}


def paired_summary(rows, weights):
    """Mean and standard error over seeds of each weight's probe minus the first weight's."""
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["adversarial_weight"]] = r
    summary = {}
    for w in weights[1:]:
        diffs = [s[w]["linear_probe"] - s[weights[0]]["linear_probe"] for s in by_seed.values() if w in s]
        if diffs:
            se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else None
            summary[f"linear_probe({w:g}) - linear_probe({weights[0]:g})"] = {
                "mean": round(float(np.mean(diffs)), 4), "standard_error": se and round(se, 4), "seeds": len(diffs)}
    return summary


def as_report(result):
    """Parts keep rows by name; the result file lists them with a ``method`` key, as report.py tabulates."""
    rows = [{"method": name, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}}
            for name, row in result["rows"].items()]
    return {"machine": result["config"]["machine"], "torch": torch.__version__, "config": result["config"], "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["render", "fashion", "paired"])
    parser.add_argument("--render-n", type=int, default=10_000)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weights", type=float, nargs="*", default=[0.0, 1.0])
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3], help="paired: one sample and fit per seed")
    parser.add_argument("--domain-loss", default="confusion", choices=["confusion", "reversal"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", action="store_true", help="write results/synthetic_part_<weight>.json")
    parser.add_argument("--merge", action="store_true", help="join the parts into results/synthetic_fashion.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(RESULTS, exist_ok=True)
    if args.what == "render":
        result = render(args.render_n)
        print(result)
        with open(os.path.join(RESULTS, "synthetic_render.json"), "w") as f:
            json.dump(result, f, indent=1)
        return
    if args.what == "paired":
        result = paired(args.seeds, args.weights, args.n_train, args.n_test, args.epochs, args.batch_size,
                        args.domain_loss)
        print(json.dumps(result["summary"], indent=1))
        with open(os.path.join(RESULTS, "synthetic_paired.json"), "w") as f:
            json.dump(result, f, indent=1)
        return
    if args.merge:
        parts = sorted(glob.glob(os.path.join(RESULTS, "synthetic_part_*.json")))
        merged = None
        for path in parts:
            with open(path) as f:
                part = json.load(f)
            merged = part if merged is None else {**merged, "rows": {**merged["rows"], **part["rows"]}}
        with open(os.path.join(RESULTS, "synthetic_fashion.json"), "w") as f:
            json.dump(as_report(merged), f, indent=1)
        for path in parts:
            os.remove(path)
        return
    result = fashion(args.weights, args.n_train, args.n_test, args.epochs, args.batch_size, args.random_state,
                     args.domain_loss, baseline=not args.part or 0.0 in args.weights)
    name = (f"synthetic_part_{args.domain_loss}_{'_'.join(f'{w:g}' for w in args.weights)}" if args.part
            else "synthetic_fashion")
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(result if args.part else as_report(result), f, indent=1)


if __name__ == "__main__":
    main()
