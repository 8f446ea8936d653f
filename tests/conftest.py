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
