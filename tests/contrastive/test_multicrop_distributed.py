"""SwAV's Sinkhorn-Knopp and DINO's centre with 2 gloo processes equal one process on the global batch."""

import json
import os
import subprocess
import sys

HERE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "distributed")


def test_sinkhorn_and_dino_centre_over_two_processes_equal_one_process(tmp_path):
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(HERE, "multicrop_worker.py"), str(out)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["sinkhorn"] < 1e-6 and r["sinkhorn_tiny_epsilon"] < 1e-5, r
    assert r["center"] < 1e-6 and r["center_ranks_equal"] == 0.0, r
    # Each process normalising over its own half would give visibly different codes and centres.
    assert r["sinkhorn_per_process_sums"] > 1e-2 and r["center_per_process_sums"] > 1e-2, r
