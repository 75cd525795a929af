"""Self-diffusion: label maps from seeds by a random walk over superpixels (Xiao et al. 2018, Eq. 2).

One job, independent of any method: given an image, a class-agnostic object mask M in [0, 1] and
seed pixels per class, return a label map. The pipeline is

    superpixels -> superpixel_features -> adjacency -> affinity -> diffuse -> label_map

and `diffuse_image` ties it together. docs/diffusion.md explains the reading of the paper; the
short version:

- Features are the mean normalised CIELAB colour and the mean M of each superpixel (R^4).
- Adjacent superpixels (4-neighbourhood) are joined with the weight printed in the paper,
  z_ij = exp(-||F_i - F_j|| / (2 sigma^2)) (the norm is not squared, as printed; `squared=True`
  gives the textbook Gaussian). Non-adjacent pairs have no edge.
- Eq. 2, min_q 1/2 sum_ij z_ij (q_i - q_j)^2 with q clamped on labelled nodes, is solved in closed
  form (the harmonic function): L_UU q_U = W_UB q_B, one LU factorisation shared by all classes.
- Labelled nodes are the seeds of every class plus background seeds. For class c, its own seeds
  are clamped to 1 and all other labelled nodes to 0, so q_c(i) is the probability that a walker
  leaving superpixel i reaches a seed of c before any other seed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

BACKGROUND = 0
IGNORE = 255


@dataclass(frozen=True)
class DiffusionParams:
    """The knobs of `diffuse_image`. The paper gives none of these values; see docs/diffusion.md."""

    n_segments: int = 200           # SLIC's target number of superpixels
    compactness: float = 10.0       # SLIC's colour/space trade-off (skimage's default)
    sigma: float = 0.1              # bandwidth of z_ij on features that each lie in [0, 1]
    squared: bool = False           # False: the paper's printed ||.||; True: ||.||^2
    seed_fraction: float = 0.5      # a superpixel is a seed if at least this share of it is seed
    background_mask_threshold: float = 0.1  # mean M below this: a background seed (no M-object)
    background_threshold: float = 0.5       # a class needs q above this, else background


# --- superpixels and their features ---------------------------------------------------------------

def superpixels(image: np.ndarray, n_segments: int = 200, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of an (H, W, 3) uint8 image as (H, W) int64 labels 0..S-1, all present.

    SLIC seeds its centres on a regular grid (skimage draws random centres only in its mask mode,
    and then from a fixed RandomState), so the result is deterministic and needs no seed argument.
    """
    from skimage.segmentation import slic

    _check_image(image)
    labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0,
                  channel_axis=-1)
    # The graph code indexes superpixels by label, so make the labels exactly 0..S-1.
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int64)


def normalised_lab(image: np.ndarray) -> np.ndarray:
    """CIELAB of an RGB uint8 image with each channel mapped to about [0, 1].

    L is in [0, 100]; a and b of sRGB colours lie within [-128, 127]. Scaling puts colour on the
    same footing as M in [0, 1], so one sigma serves all four feature dimensions.
    """
    from skimage.color import rgb2lab

    _check_image(image)
    lab = rgb2lab(image)
    return np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128.0) / 255.0,
                     (lab[..., 2] + 128.0) / 255.0], axis=-1)


def superpixel_features(image: np.ndarray, mask_prob: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(S, 4): per superpixel, the mean normalised CIELAB (3) and the mean object mask M (1)."""
    mask_prob = np.asarray(mask_prob, dtype=np.float64)
    if mask_prob.shape != segments.shape or image.shape[:2] != segments.shape:
        raise ValueError(f"image {image.shape[:2]}, mask {mask_prob.shape} and segments "
                         f"{segments.shape} must have the same height and width")
    if mask_prob.size and (mask_prob.min() < 0 or mask_prob.max() > 1):
        raise ValueError("mask_prob must lie in [0, 1]")
    pixels = np.concatenate([normalised_lab(image), mask_prob[..., None]], axis=-1).reshape(-1, 4)
    return segment_means(segments, pixels)


def segment_means(segments: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of `values` (N, K), one row per pixel in raster order, over each segment: (S, K)."""
    flat = segments.ravel()
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    if (counts == 0).any():
        raise ValueError("segment labels must be 0..S-1 with every label present")
    sums = np.stack([np.bincount(flat, weights=values[:, k], minlength=n)
                     for k in range(values.shape[1])], axis=1)
    return sums / counts[:, None]


# --- the graph -------------------------------------------------------------------------------------

def adjacency(segments: np.ndarray) -> sp.csr_matrix:
    """(S, S) symmetric 0/1 matrix: 1 where two superpixels share a horizontal or vertical edge."""
    n = int(segments.max()) + 1
    # Every pair of 4-neighbouring pixels with different labels is a touching pair of superpixels.
    pairs = [(segments[:, :-1], segments[:, 1:]), (segments[:-1, :], segments[1:, :])]
    a = np.concatenate([p.ravel() for p, _ in pairs])
    b = np.concatenate([q.ravel() for _, q in pairs])
    cross = a != b
    a, b = a[cross], b[cross]
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    m = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    m.data[:] = 1.0  # duplicates were summed: a long shared border is still one edge
    return m


def affinity(features: np.ndarray, adjacency: sp.spmatrix, sigma: float = 0.1,
             squared: bool = False) -> sp.csr_matrix:
    """z_ij = exp(-d_ij / (2 sigma^2)) on adjacent pairs, d = ||F_i - F_j|| (or its square)."""
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    coo = sp.coo_matrix(adjacency)
    keep = coo.row != coo.col  # a self-loop adds nothing to Eq. 2's sum
    rows, cols = coo.row[keep], coo.col[keep]
    diff = features[rows] - features[cols]
    dist = np.einsum("ij,ij->i", diff, diff)
    if not squared:
        dist = np.sqrt(dist)
    weights = np.exp(-dist / (2.0 * sigma ** 2))
    w = sp.coo_matrix((weights, (rows, cols)), shape=adjacency.shape).tocsr()
    w.eliminate_zeros()  # underflowed weights are no edge, which `diffuse` relies on
    return w


# --- the random walk -------------------------------------------------------------------------------

def diffuse(w: sp.spmatrix, seeds: Mapping[int, np.ndarray],
            background: np.ndarray | None = None) -> np.ndarray:
    """The harmonic solution of Eq. 2 for each class: q of shape (C, S), rows in `seeds` order.

    Labelled nodes are the seeds of all classes plus `background` (bool (S,), optional); they
    must be disjoint. For class c, its seeds are clamped to 1 and every other labelled node to 0
    (the paper's "fixed to 1 ... otherwise 0", read as a multi-label random walk: without some
    node clamped to 0 the minimiser of Eq. 2 is the constant 1). Each unlabelled node then holds
    the probability that a walker from it, stepping to neighbours in proportion to z_ij, hits a
    seed of c first. Unlabelled nodes are solved by L_UU q_U = W_UB q_B with L = D - W, one LU
    factorisation for all classes. Nodes whose connected component has no labelled node get NaN
    in every row: the walk says nothing about them.
    """
    w = sp.csr_matrix(w, dtype=np.float64)
    n = w.shape[0]
    classes = list(seeds)
    clamp, labelled = _clamped_values(n, [seeds[c] for c in classes], background)
    q = np.full((n, len(classes)), np.nan)
    q[labelled] = clamp[labelled]
    free = ~labelled & _reaches_labelled(w, labelled)
    if classes and free.any():
        q[free] = _harmonic(w, free, labelled, clamp[labelled])
    return q.T


def _clamped_values(n: int, class_seeds: Sequence[np.ndarray],
                    background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(S, C) boundary values (1 at class k's seeds in column k, 0 elsewhere) and the labelled mask."""
    clamp = np.zeros((n, len(class_seeds)))
    labelled = np.zeros(n, dtype=bool)
    masks = [*class_seeds, *([] if background is None else [background])]
    for k, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"seed masks must have shape ({n},), got {mask.shape}")
        if (labelled & mask).any():
            raise ValueError("a superpixel is a seed of two classes (or of a class and background)")
        labelled |= mask
        if k < len(class_seeds):
            clamp[mask, k] = 1.0
    return clamp, labelled


def _reaches_labelled(w: sp.csr_matrix, labelled: np.ndarray) -> np.ndarray:
    """Nodes in a connected component (over positive weights) that holds a labelled node.

    Restricting the solve to these keeps L_UU non-singular: each of its components touches the
    boundary, which makes it irreducibly diagonally dominant.
    """
    _, comp = connected_components(w, directed=False)
    hit = np.zeros(comp.max() + 1 if comp.size else 0, dtype=bool)
    hit[comp[labelled]] = True
    return hit[comp]


def _harmonic(w: sp.csr_matrix, free: np.ndarray, labelled: np.ndarray,
              boundary: np.ndarray) -> np.ndarray:
    """Solve (D - W)_UU x = W_UB boundary for the free nodes U given values on the labelled B."""
    degree = np.asarray(w.sum(axis=1)).ravel()
    laplacian = (sp.diags(degree) - w).tocsr()
    l_uu = laplacian[free][:, free].tocsc()
    rhs = w[free][:, labelled] @ boundary  # -L_UB = W_UB off the diagonal
    return splu(l_uu).solve(np.ascontiguousarray(rhs))


# --- from q to pixels ------------------------------------------------------------------------------

def label_map(q: np.ndarray, segments: np.ndarray, classes: Sequence[int],
              background_threshold: float = 0.5) -> np.ndarray:
    """(H, W) uint8: each superpixel takes the class with the largest q if that q is above
    `background_threshold`, else BACKGROUND; superpixels the walk never reached (NaN) are IGNORE.

    Ties between classes go to the earlier class in `classes`. With threshold 0.5 a class needs a
    walker to be more likely to reach its seeds than all other seeds together.
    """
    classes = np.asarray(list(classes), dtype=np.int64)
    if q.shape[0] != classes.size:
        raise ValueError(f"q has {q.shape[0]} rows for {classes.size} classes")
    if ((classes <= BACKGROUND) | (classes >= IGNORE)).any():
        raise ValueError(f"class ids must lie in 1..{IGNORE - 1}")
    per_segment = np.full(q.shape[1], BACKGROUND, dtype=np.uint8)
    if classes.size:
        unreached = np.isnan(q).all(axis=0)
        scores = np.where(np.isnan(q), -np.inf, q)
        best = scores.argmax(axis=0)
        top = scores.max(axis=0)
        per_segment = np.where(top > background_threshold, classes[best], BACKGROUND).astype(np.uint8)
        per_segment[unreached] = IGNORE
    return per_segment[segments]


def seed_superpixels(segments: np.ndarray, seed_pixels: Sequence[np.ndarray],
                     fraction: float) -> np.ndarray:
    """(K, S) bool: mask k covers superpixel s if at least `fraction` of s's pixels are in it.

    A superpixel that qualifies for several masks goes to the one covering the largest share of it
    (the first on ties), so the returned rows are disjoint as `diffuse` requires.
    """
    n = int(segments.max()) + 1
    if not seed_pixels:
        return np.zeros((0, n), dtype=bool)
    for mask in seed_pixels:
        if mask.shape != segments.shape:
            raise ValueError(f"seed mask {mask.shape} does not match segments {segments.shape}")
    pixels = np.stack([np.asarray(m, dtype=np.float64).ravel() for m in seed_pixels], axis=1)
    share = segment_means(segments, pixels).T  # (K, S)
    winner = share.argmax(axis=0)
    qualifies = share.max(axis=0) >= fraction
    out = np.zeros_like(share, dtype=bool)
    out[winner[qualifies], np.flatnonzero(qualifies)] = True
    return out


def diffuse_image(image: np.ndarray, mask_prob: np.ndarray, seeds_by_class: Mapping[int, np.ndarray],
                  params: DiffusionParams = DiffusionParams(),
                  background_pixels: np.ndarray | None = None) -> np.ndarray:
    """The label map L_w of one image from its object mask M and per-class seed pixels (H, W) bool.

    Seed rule: a superpixel is a seed of class c if at least `params.seed_fraction` of its pixels
    are seed pixels of c (largest share wins between classes). Background seeds: superpixels with
    at least that share of `background_pixels` if given, else those whose mean M is below
    `params.background_mask_threshold` (the L-Net sees no object there); class seeds win over
    background.
    """
    segments = superpixels(image, params.n_segments, params.compactness)
    features = superpixel_features(image, mask_prob, segments)
    w = affinity(features, adjacency(segments), params.sigma, params.squared)
    classes = list(seeds_by_class)
    class_seeds = seed_superpixels(segments, [np.asarray(seeds_by_class[c], bool) for c in classes],
                                   params.seed_fraction)
    if background_pixels is not None:
        background = seed_superpixels(segments, [np.asarray(background_pixels, bool)],
                                      params.seed_fraction)[0]
    else:
        background = features[:, 3] < params.background_mask_threshold
    background &= ~class_seeds.any(axis=0)
    q = diffuse(w, dict(zip(classes, class_seeds)), background)
    return label_map(q, segments, classes, params.background_threshold)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")


# --- many images -----------------------------------------------------------------------------------

def diffuse_images(jobs: Sequence[tuple[np.ndarray, np.ndarray, Mapping[int, np.ndarray]]],
                   params: DiffusionParams = DiffusionParams(), workers: int = 0):
    """`diffuse_image` over (image, mask_prob, seeds_by_class) jobs: (label maps, seconds each).

    workers >= 1 runs them in that many spawned processes (fresh interpreters: no forked torch or
    Ray state, and this module imports only numpy and scipy, so a worker starts in about a second);
    the result is the same as in-process, in job order."""
    if workers <= 0 or len(jobs) < 2:
        results = [_timed_job((*job, params)) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        chunk = max(1, len(jobs) // (4 * workers))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_timed_job, [(*job, params) for job in jobs], chunksize=chunk))
    return [r[0] for r in results], [r[1] for r in results]


def _timed_job(args):
    import time
    image, mask_prob, seeds_by_class, params = args
    t0 = time.perf_counter()
    out = diffuse_image(image, mask_prob, seeds_by_class, params)
    return out, time.perf_counter() - t0
