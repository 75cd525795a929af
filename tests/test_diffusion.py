"""Self-diffusion (unisemi.diffusion): the harmonic random walk of Eq. 2 over superpixels.

Expected values are worked out by hand in the comments wherever the case is small enough.
"""
import math

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("skimage")

from unisemi.diffusion import (BACKGROUND, IGNORE, DiffusionParams, adjacency, affinity, diffuse,
                               diffuse_image, label_map, seed_superpixels, superpixel_features,
                               superpixels)


def path_graph(weights):
    """Sparse W of a path 0-1-...-n with edge weights w_{i,i+1} = weights[i]."""
    n = len(weights) + 1
    i = np.arange(n - 1)
    w = sp.coo_matrix((weights, (i, i + 1)), shape=(n, n))
    return (w + w.T).tocsr()


def onehot(n, *nodes):
    m = np.zeros(n, dtype=bool)
    m[list(nodes)] = True
    return m


# --- the harmonic solution ---------------------------------------------------------------------

def test_three_node_path_interpolates_between_clamped_ends():
    # 0 (class, q=1) -a- 1 -b- 2 (background, q=0): q1 = (a*1 + b*0) / (a + b).
    q = diffuse(path_graph([1.0, 3.0]), {4: onehot(3, 0)}, background=onehot(3, 2))
    np.testing.assert_allclose(q, [[1.0, 0.25, 0.0]])


def test_four_node_path_unit_weights_is_linear():
    q = diffuse(path_graph([1.0, 1.0, 1.0]), {1: onehot(4, 0)}, background=onehot(4, 3))
    np.testing.assert_allclose(q, [[1.0, 2 / 3, 1 / 3, 0.0]])


def test_four_node_path_weighted_is_linear_in_resistance():
    # Resistances 1/w = 1, 0.5, 1 (total 2.5): q drops by 1/2.5, 0.5/2.5, 1/2.5 along the path.
    q = diffuse(path_graph([1.0, 2.0, 1.0]), {1: onehot(4, 0)}, background=onehot(4, 3))
    np.testing.assert_allclose(q, [[1.0, 0.6, 0.4, 0.0]])


def test_two_classes_clamp_each_other_to_zero():
    # Class 1 at node 0, class 2 at node 3, no background: each row is the other reversed and
    # every free node's probabilities sum to one.
    q = diffuse(path_graph([1.0, 1.0, 1.0]), {1: onehot(4, 0), 2: onehot(4, 3)})
    np.testing.assert_allclose(q, [[1.0, 2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3, 1.0]])
    np.testing.assert_allclose(q.sum(axis=0), 1.0)


def test_single_class_without_background_floods_its_component():
    # Nothing is clamped to 0, so the minimiser of Eq. 2 is the constant 1: why diffuse_image
    # needs background seeds.
    q = diffuse(path_graph([1.0, 5.0, 0.1]), {1: onehot(4, 1)})
    np.testing.assert_allclose(q, np.ones((1, 4)))


def random_graph(rng, n):
    """A connected weighted graph: a random spanning path plus random extra edges."""
    order = rng.permutation(n)
    rows, cols = list(order[:-1]), list(order[1:])
    extra = rng.integers(0, n, size=(2 * n, 2))
    extra = extra[extra[:, 0] != extra[:, 1]]
    rows += list(extra[:, 0])
    cols += list(extra[:, 1])
    w = sp.coo_matrix((rng.uniform(0.1, 2.0, len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    w = w.maximum(w.T)
    return w.tocsr()


def test_solve_matches_dense_reference_on_random_graph():
    rng = np.random.default_rng(0)
    n = 15
    w = random_graph(rng, n)
    seeds = {3: onehot(n, 0, 5), 9: onehot(n, 7)}
    background = onehot(n, 11, 12)
    q = diffuse(w, seeds, background)

    dense = w.toarray()
    lap = np.diag(dense.sum(axis=1)) - dense
    labelled = seeds[3] | seeds[9] | background
    free = ~labelled
    for row, c in enumerate(seeds):
        boundary = seeds[c][labelled].astype(float)
        expected = np.linalg.solve(lap[np.ix_(free, free)], -lap[np.ix_(free, labelled)] @ boundary)
        np.testing.assert_allclose(q[row, free], expected, rtol=1e-10)
        np.testing.assert_array_equal(q[row, labelled], boundary)


def test_free_nodes_are_the_weighted_mean_of_their_neighbours():
    # The defining property of the harmonic function (the stationarity of Eq. 2).
    rng = np.random.default_rng(1)
    n = 20
    w = random_graph(rng, n)
    seeds = {1: onehot(n, 2), 2: onehot(n, 9)}
    background = onehot(n, 15)
    q = diffuse(w, seeds, background)
    free = ~(seeds[1] | seeds[2] | background)
    degree = np.asarray(w.sum(axis=1)).ravel()
    np.testing.assert_allclose((w @ q.T)[free] / degree[free, None], q.T[free], rtol=1e-10)
    assert np.all((q >= -1e-12) & (q <= 1 + 1e-12))


def test_component_without_labelled_node_is_nan():
    # Two components: 0-1 holds the seed, 2-3 holds nothing.
    w = sp.csr_matrix(sp.block_diag([path_graph([1.0]), path_graph([1.0])]))
    q = diffuse(w, {1: onehot(4, 0)}, background=onehot(4, 1))
    np.testing.assert_array_equal(q[0, :2], [1.0, 0.0])
    assert np.isnan(q[0, 2:]).all()


def test_overlapping_seeds_are_refused():
    with pytest.raises(ValueError, match="two classes"):
        diffuse(path_graph([1.0, 1.0]), {1: onehot(3, 0), 2: onehot(3, 0)})
    with pytest.raises(ValueError, match="two classes"):
        diffuse(path_graph([1.0, 1.0]), {1: onehot(3, 0)}, background=onehot(3, 0, 2))


# --- graph construction -------------------------------------------------------------------------

def test_adjacency_of_hand_made_segments():
    segments = np.array([[0, 0, 1, 1],
                         [0, 0, 1, 1],
                         [2, 2, 3, 3]])
    # 0-1 and 2-3 share vertical borders, 0-2 and 1-3 horizontal ones; 0-3 and 1-2 meet only
    # at a corner, which the 4-neighbourhood does not count.
    expected = np.zeros((4, 4))
    for i, j in [(0, 1), (2, 3), (0, 2), (1, 3)]:
        expected[i, j] = expected[j, i] = 1
    np.testing.assert_array_equal(adjacency(segments).toarray(), expected)


def test_affinity_by_hand():
    features = np.array([[0.0, 0.0, 0.0, 0.0],
                         [0.3, 0.0, 0.0, 0.4],   # ||F_1 - F_0|| = 0.5
                         [0.0, 0.0, 0.0, 0.0]])
    adj = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float))
    # sigma = 0.5: 2 sigma^2 = 0.5, so z = exp(-0.5 / 0.5) as printed, exp(-0.25 / 0.5) squared.
    w = affinity(features, adj, sigma=0.5).toarray()
    assert w[0, 1] == pytest.approx(math.exp(-1.0)) and w[1, 0] == pytest.approx(math.exp(-1.0))
    # 0 and 2 have identical features but do not touch: still no edge.
    assert w[0, 2] == 0 and w[0, 0] == 0
    w2 = affinity(features, adj, sigma=0.5, squared=True).toarray()
    assert w2[0, 1] == pytest.approx(math.exp(-0.5))


def test_superpixel_features_means_by_hand():
    black, white = (0, 0, 0), (255, 255, 255)
    image = np.array([[black, white, white],
                      [white, black, white]], dtype=np.uint8)
    segments = np.array([[0, 0, 1],
                         [0, 0, 1]])
    mask = np.array([[0.2, 0.4, 1.0],
                     [0.6, 0.8, 1.0]])
    f = superpixel_features(image, mask, segments)
    # Lab of black is (0, 0, 0), of white (100, 0, 0); a, b = 0 normalise to 128/255.
    mid = 128 / 255
    np.testing.assert_allclose(f, [[0.5, mid, mid, 0.5], [1.0, mid, mid, 1.0]], atol=1e-4)


def test_superpixels_are_contiguous_and_deterministic():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    a = superpixels(image, n_segments=12)
    b = superpixels(image, n_segments=12)
    assert a.shape == (32, 40)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.unique(a), np.arange(a.max() + 1))


# --- labels -------------------------------------------------------------------------------------

def test_label_map_takes_largest_q_above_threshold():
    segments = np.array([[0, 1, 2, 3, 4]])
    q = np.array([[0.9, 0.2, 0.4, 0.6, np.nan],    # class 5
                  [0.1, 0.7, 0.3, 0.6, np.nan]])   # class 8
    out = label_map(q, segments, classes=[5, 8], background_threshold=0.5)
    # 0: class 5; 1: class 8; 2: no class above 0.5, background; 3: tie, the first class;
    # 4: never reached, ignore.
    np.testing.assert_array_equal(out, [[5, 8, BACKGROUND, 5, IGNORE]])
    assert out.dtype == np.uint8


def test_seed_superpixels_share_rule():
    segments = np.array([[0, 0, 1, 1],
                         [0, 0, 1, 1]])
    a = np.array([[1, 1, 1, 0],
                  [0, 0, 1, 0]], dtype=bool)   # share 2/4 of sp 0, 2/4 of sp 1
    b = np.array([[0, 0, 0, 1],
                  [0, 0, 0, 1]], dtype=bool)   # share 0 of sp 0, 2/4 of sp 1
    np.testing.assert_array_equal(seed_superpixels(segments, [a, b], 0.5),
                                  [[True, True], [False, False]])   # sp 1: a tie, a wins
    np.testing.assert_array_equal(seed_superpixels(segments, [a, b], 0.75),
                                  [[False, False], [False, False]])


# --- whole images ------------------------------------------------------------------------------

def two_regions():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[:, :20] = (200, 30, 30)
    image[:, 20:] = (30, 30, 200)
    seeds = {3: np.zeros((40, 40), bool), 7: np.zeros((40, 40), bool)}
    seeds[3][:16, :20] = True   # about one superpixel at the top of the left region
    seeds[7][24:, 20:] = True   # and one at the bottom of the right region
    return image, np.ones((40, 40)), seeds


def test_two_flat_regions_take_their_seeds_class():
    image, mask, seeds = two_regions()
    out = diffuse_image(image, mask, seeds, DiffusionParams(n_segments=8))
    assert (out[:, :20] == 3).all()
    assert (out[:, 20:] == 7).all()


def test_object_mask_gives_background_outside_the_object():
    # A green square on grey; the L-Net mask M is 1 on the square and 0 off it. Seed pixels of
    # class 5 in the square's top-left quarter make one seed superpixel; the walk spreads it over
    # the rest of the square and stops at M = 0 (the background seeds).
    image = np.full((48, 48, 3), 128, dtype=np.uint8)
    image[12:36, 12:36] = (30, 160, 40)
    mask = np.zeros((48, 48))
    mask[12:36, 12:36] = 1.0
    seed = np.zeros((48, 48), bool)
    seed[12:24, 12:24] = True
    params = DiffusionParams(n_segments=16)
    segments = superpixels(image, params.n_segments, params.compactness)
    in_square = np.unique(segments[12:36, 12:36])
    seeded = seed_superpixels(segments, [seed], params.seed_fraction)[0]
    assert seeded.sum() == 1 and len(in_square) > 1  # so the rest is the walk's work
    out = diffuse_image(image, mask, {5: seed}, params)
    expected = np.where(mask > 0, 5, BACKGROUND)
    np.testing.assert_array_equal(out, expected)


def test_diffuse_image_is_deterministic():
    rng = np.random.default_rng(3)
    # Random 8x8 colour blocks plus noise: structure SLIC can follow (pure noise is one segment).
    blocks = rng.integers(0, 256, size=(5, 6, 3)).repeat(8, axis=0).repeat(8, axis=1)
    image = np.clip(blocks + rng.integers(-10, 11, size=blocks.shape), 0, 255).astype(np.uint8)
    mask = rng.uniform(size=(40, 48))
    seeds = {2: np.zeros((40, 48), bool), 4: np.zeros((40, 48), bool)}
    seeds[2][:20, :20] = True
    seeds[4][20:, 28:] = True
    params = DiffusionParams(n_segments=20)
    a = diffuse_image(image, mask, seeds, params)
    b = diffuse_image(image, mask, seeds, params)
    np.testing.assert_array_equal(a, b)
    assert (a == 2).any() and (a == 4).any()
