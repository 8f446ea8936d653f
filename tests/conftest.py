"""Test-session settings."""

import torch

# The suite runs as many small fits in parallel pytest-xdist workers (one per
# core); one torch thread per worker avoids oversubscribing the cores.
torch.set_num_threads(1)
