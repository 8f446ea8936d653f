"""Test-session settings."""

import os
import sys

import torch

# The suite runs as many small fits in parallel pytest-xdist workers (one per
# core); one torch thread per worker avoids oversubscribing the cores.
torch.set_num_threads(1)

# Test modules share small settings (tests/test_estimator_checks.py's tiny
# heads); with --import-mode=importlib they import each other from here.
sys.path.insert(0, os.path.dirname(__file__))

# Audit mode: SKSSL_TEST_NO_OPTIMIZER_STEP=1 makes every optimiser step a no-op
# for the whole session (tests/_untrained.py). Every learning test must then
# fail; one that passes claims something it does not check.
if os.environ.get("SKSSL_TEST_NO_OPTIMIZER_STEP"):
    from _untrained import no_optimizer_step

    _AUDIT = no_optimizer_step()  # kept: a collected generator would undo the patch
    _AUDIT.__enter__()
