"""Tiles and tile permutations shared by the patch-based pretext tasks.

Jigsaw (Noroozi & Favaro 2016), context prediction (Doersch et al. 2015) and
PIRL (Misra & van der Maaten 2020) all cut an image into a grid of tiles with
a gap between them and a random jitter of each tile inside its cell, so that
low-level cues (continuing edges, aligned borders, chromatic aberration) do
not give the answer away.
"""

import math
from functools import lru_cache
from itertools import permutations

import numpy as np
import torch

# Above this many candidate permutations (9! = 362,880 for 9 tiles) the greedy
# selection draws this many random candidates instead of enumerating them all.
_MAX_CANDIDATES = 50_000


def grid_tiles(x, grid=3, gap=0.1, jitter=True, generator=None):
    """Cut every image of a batch into ``grid * grid`` square tiles.

    Parameters
    ----------
    x : Tensor of shape (B, C, H, W)
        Images; every cell must be at least 1 pixel.
    grid : int, default=3
        Cells per side.
    gap : float in [0, 1), default=0.1
        Fraction of the cell side left out of each tile, so tiles never touch.
    jitter : bool, default=True
        Place each tile at a random position inside its cell, independently
        per image and per tile; otherwise centre it.
    generator : torch.Generator or None
        Source of the jitter (on ``x``'s device).

    Returns
    -------
    Tensor of shape (B, grid * grid, C, t, t)
        Tiles in row-major order, ``t = floor(min(H, W) // grid * (1 - gap))``.
    """
    if x.ndim != 4:
        raise ValueError(f"grid_tiles expects a (B, C, H, W) batch; got shape {tuple(x.shape)}.")
    if grid < 1:
        raise ValueError(f"grid must be >= 1; got {grid}.")
    if not 0 <= gap < 1:
        raise ValueError(f"gap must be in [0, 1); got {gap}.")
    b, _, h, w = x.shape
    cell_h, cell_w = h // grid, w // grid
    if min(cell_h, cell_w) < 1:
        raise ValueError(f"images of {h}x{w} pixels are too small for a {grid}x{grid} grid of tiles.")
    t = max(1, int(min(cell_h, cell_w) * (1 - gap)))
    k = grid * grid
    slack_h, slack_w = cell_h - t, cell_w - t
    if jitter:
        u = torch.rand(2, b, k, generator=generator, device=x.device)
        off_y = (u[0] * (slack_h + 1)).long().clamp_(max=slack_h)
        off_x = (u[1] * (slack_w + 1)).long().clamp_(max=slack_w)
    else:
        off_y = torch.full((b, k), slack_h // 2, device=x.device, dtype=torch.long)
        off_x = torch.full((b, k), slack_w // 2, device=x.device, dtype=torch.long)
    cells = torch.arange(k, device=x.device)
    top = (cells // grid) * cell_h + off_y  # (B, K)
    left = (cells % grid) * cell_w + off_x
    steps = torch.arange(t, device=x.device)
    rows = (top[..., None] + steps)[..., :, None]  # (B, K, t, 1)
    cols = (left[..., None] + steps)[..., None, :]  # (B, K, 1, t)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    # One gather for every tile of every image: advanced indices around the
    # channel slice put their broadcast shape (B, K, t, t) first.
    tiles = x[batch, :, rows, cols]  # (B, K, t, t, C)
    return tiles.permute(0, 1, 4, 2, 3).contiguous()


def max_hamming_permutations(n_permutations, n_tiles=9, seed=0, selection="mean"):
    """Permutations of ``n_tiles`` tiles that are far apart in Hamming distance.

    Greedy: start from a random permutation and repeatedly add the candidate
    farthest from the ones already chosen (ties broken by a seeded random
    order). ``selection="mean"`` is Noroozi & Favaro's Algorithm 1 (2016):
    the candidate with the largest *mean* Hamming distance to the chosen set.
    ``selection="min"`` takes the candidate with the largest *minimum*
    distance instead, which guarantees that no two permutations are close
    (the mean rule can add one a distance of 2 from a chosen one when that
    raises the average: for 64 permutations of 9 tiles the min rule keeps
    every pair at least 7 apart, the mean rule only 4, for mean distances of
    8.10 and 8.13). For up to 8 tiles every
    permutation is a candidate; for more (9! = 362,880) 50,000 distinct
    random permutations are drawn instead (the paper searches all 9!), which
    keeps the selection well under a second.

    Returns
    -------
    LongTensor of shape (n_permutations, n_tiles)
        Distinct permutations; deterministic given ``seed`` and ``selection``.
    """
    if n_tiles < 1:
        raise ValueError(f"n_tiles must be >= 1; got {n_tiles}.")
    total = math.factorial(n_tiles)
    if not 1 <= n_permutations <= total:
        raise ValueError(f"n_permutations must be between 1 and {n_tiles}! = {total}; got {n_permutations}.")
    if selection not in ("mean", "min"):
        raise ValueError(f"selection must be 'mean' or 'min'; got {selection!r}.")
    return torch.from_numpy(_greedy_permutations(int(n_permutations), int(n_tiles), int(seed), selection).copy())


@lru_cache(maxsize=16)
def _greedy_permutations(n_permutations, n_tiles, seed, selection="min"):
    rng = np.random.default_rng(seed)
    if math.factorial(n_tiles) <= _MAX_CANDIDATES:
        candidates = np.array(list(permutations(range(n_tiles))), dtype=np.int8).reshape(-1, n_tiles)
        candidates = candidates[rng.permutation(len(candidates))]
    else:
        draws = rng.permuted(np.tile(np.arange(n_tiles, dtype=np.int8), (_MAX_CANDIDATES, 1)), axis=1)
        _, first = np.unique(draws, axis=0, return_index=True)
        candidates = draws[np.sort(first)]
        if len(candidates) < n_permutations:  # only when asking for almost every permutation
            raise ValueError(f"n_permutations={n_permutations} is too many to select by sampling for {n_tiles} tiles.")
    chosen = [0]
    distance = (candidates != candidates[0]).sum(axis=1).astype(np.int64)  # min or summed distance
    for _ in range(n_permutations - 1):
        score = distance.copy()
        score[chosen] = -1  # the summed distance of a chosen one is not 0: never pick it twice
        best = int(np.argmax(score))
        chosen.append(best)
        new = (candidates != candidates[best]).sum(axis=1)
        if selection == "min":
            np.minimum(distance, new, out=distance)
        else:
            distance += new
    return candidates[chosen].astype(np.int64)
