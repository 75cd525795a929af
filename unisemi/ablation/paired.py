"""Statistics of a table's comparisons: paired by seed and split where cells share them.

Within a table, seed s gives every cell the same labelled split, initialisation and data order,
so the seed effect cancels in the difference of two cells at the same (seed, split): the test of
two such cells is on the per-pair differences. Only cells that share no pairs (another #City, a
rows-only table) fall back to Welch's test on the two samples.

- `paired_t`: mean difference, its 95% t interval (n - 1 df) and the two-sided p;
- `bootstrap_interval`: a percentile bootstrap of the mean difference, resampling the pairs. Used
  instead of the t interval from `BOOTSTRAP_MIN_N` pairs on: with fewer, the resamples take too few
  distinct values (at n = 2 only three means) and the interval under-covers;
- `welch`: the unpaired fallback (Welch-Satterthwaite df);
- `holm`: Holm's step-down adjustment of a family of p-values;
- `seeds_needed`: the paired design's sample size for a given effect at the measured sd of the
  differences (noncentral t, two-sided, `ALPHA`, `POWER`);
- `resolvable`: the half-width of the paired interval, the smallest difference a table resolves.

Plain functions on numpy arrays; scipy.stats where it has the distribution.
"""
from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_MIN_N = 10
BOOTSTRAP_DRAWS = 10000
MAX_SEEDS = 10000          # seeds_needed stops looking here (an effect of ~0 needs more)
# Half the last printed digit (tables print one decimal): a difference below it cannot be seen in a
# table, so it is never a significant lead, mark or reproduced claim, whatever its p. With 2 seeds
# the paired t test has 1 df and two nearly equal differences (+0.0049, +0.0051) give p = 0.013 for
# a lead of 0.005: exact under normal differences, and still no finding.
RESOLUTION = 0.05


def pair_key(seed, split_id, split_seed) -> tuple:
    """What makes two trials of one table a pair: the seed and the labelled split. The split id
    names the domain, the number of labels and the split seed, so cells of another #City are no
    pair; a row without a split id (an old row) falls back to its split seed."""
    split = split_id if isinstance(split_id, str) and split_id else f"s{int(split_seed)}"
    return int(seed), split


def paired_values(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """The values of the pairs two cells share ({pair key: value} each), in one order."""
    keys = sorted(set(a) & set(b), key=str)
    return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)


def paired_t(diffs, alpha: float = ALPHA) -> dict:
    """Mean of the per-pair differences, its two-sided (1 - alpha) t interval and p (H0: mean 0).
    Identical differences (sd 0) have a zero-width interval; their p is 0 unless they are all 0
    (then 1): the t statistic's limit, as scipy's ttest_rel gives it."""
    from scipy import stats
    d = np.asarray(diffs, float)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "sd": math.nan, "lo": math.nan,
           "hi": math.nan, "p": math.nan, "df": n - 1, "interval": "t"}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    if sd == 0.0 or sd < 1e-12 * max(1.0, abs(out["mean"])):     # rounding noise of equal values
        out.update(sd=0.0, lo=out["mean"], hi=out["mean"], p=0.0 if out["mean"] != 0 else 1.0)
        return out
    se = sd / math.sqrt(n)
    t = float(stats.t.ppf(1 - alpha / 2, n - 1))
    out.update(lo=out["mean"] - t * se, hi=out["mean"] + t * se,
               p=float(2 * stats.t.sf(abs(out["mean"]) / se, n - 1)))
    return out


def bootstrap_interval(diffs, alpha: float = ALPHA, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple:
    """Percentile bootstrap (1 - alpha) interval of the mean difference, resampling the pairs
    with replacement; a fixed generator seed, so a table's interval does not change between builds."""
    d = np.asarray(diffs, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(draws, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired(diffs, alpha: float = ALPHA) -> dict:
    """paired_t, with the bootstrap interval in place of the t interval from BOOTSTRAP_MIN_N pairs."""
    out = paired_t(diffs, alpha)
    if out["n"] >= BOOTSTRAP_MIN_N and out["sd"] > 0:
        out["lo"], out["hi"] = bootstrap_interval(diffs, alpha)
        out["interval"] = "bootstrap"
    return out


def welch(a, b, alpha: float = ALPHA) -> dict:
    """mean(a) - mean(b), its Welch interval and p, for samples that share no pairs."""
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = {"n": min(len(a), len(b)), "mean": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan,
           "sd": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "df": math.nan, "interval": "Welch"}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(va + vb)
    out.update(lo=out["mean"] - half, hi=out["mean"] + half, df=float(df),
               p=float(stats.ttest_ind(a, b, equal_var=False).pvalue))
    return out


def compare(a: dict, b: dict, alpha: float = ALPHA) -> dict:
    """Cell a against cell b ({pair key: value} each): paired on their shared pairs when there
    are two or more, else Welch on all their values. 'test' names which ('paired t' or 'Welch'),
    'mean' is a - b."""
    x, y = paired_values(a, b)
    if len(x) >= 2:
        out = paired(x - y, alpha)
        out["test"] = "paired t"
        return out
    out = welch(list(a.values()), list(b.values()), alpha)
    out["test"] = "Welch" if not math.isnan(out["p"]) else None
    return out


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are not in the family and stay NaN):
    the i-th smallest of k is multiplied by k - i + 1, made monotone, capped at 1."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    k = len(idx)
    if not k:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (k - i) * p[j]))
        out[j] = running
    return out


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t test with n pairs to detect a mean difference `effect`
    when the differences have sd `sd`: P(|T| > t_crit) with T noncentral t, n - 1 df."""
    from scipy import stats
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) / sd * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """The fewest pairs (seeds, at one split each) with which the paired t test reaches power
    `target` for a true difference `effect` at differences' sd `sd`; 2 when sd is 0 (no noise
    measured), None when it cannot be said (no sd, no effect) or passes MAX_SEEDS."""
    if sd is None or effect is None or math.isnan(sd) or math.isnan(effect) or effect == 0:
        return None
    if sd == 0:
        return 2
    # the normal approximation ((z_a + z_b) sd / effect)^2 is a lower bound; search up from it
    from scipy import stats
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target))
    n = max(2, int((z * sd / abs(effect)) ** 2))
    if n > MAX_SEEDS:
        return None
    while power(effect, sd, n, alpha) < target:
        n += 1
        if n > MAX_SEEDS:
            return None
    while n > 2 and power(effect, sd, n - 1, alpha) >= target:
        n -= 1
    return n


def resolvable(sd: float, n: int, alpha: float = ALPHA) -> float:
    """Half-width of the paired (1 - alpha) t interval with n pairs at differences' sd `sd`: a
    mean difference smaller than this is not told apart from 0."""
    from scipy import stats
    if n < 2 or sd is None or math.isnan(sd):
        return math.nan
    return float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
