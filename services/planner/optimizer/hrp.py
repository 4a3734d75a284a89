"""Hierarchical risk parity weights (planner.md section 3 "HRP"; Lopez de Prado 2016, PyPortfolioOpt
`HRPOpt`). Pure.

The steps are HRPOpt.optimize's, on numpy arrays: the correlation distance sqrt((1 - rho) / 2),
scipy's single-linkage clustering and quasi-diagonal order, then the recursive bisection with
inverse-variance cluster variances. HRPOpt indexes pandas frames by ticker at every split (about
35 ms for 20 securities, most of a plan's optimiser time); positional indexing gives the same
weights (tests/test_planner_optimizer.py compares them with HRPOpt's) in about a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hrp_weights(returns: np.ndarray, symbols: Sequence[str]) -> dict[str, float] | None:
    """Weights summing to 1 from daily returns (rows x symbols, risk.daily_returns; single
    linkage, HRPOpt's default), or None with fewer than 2 securities or when the clustering
    cannot be built (a series without variance)."""
    if returns.shape[1] < 2 or len(returns) < 2:
        return None
    # heavy: loaded on first use, not at start (bench/footprint.py)
    import scipy.cluster.hierarchy as sch  # noqa: PLC0415
    import scipy.spatial.distance as ssd  # noqa: PLC0415

    values = np.asarray(returns, dtype=float)
    if not np.isfinite(values).all():
        return None
    cov = np.cov(values, rowvar=False)
    std = np.sqrt(np.diag(cov))
    if not (np.isfinite(std).all() and (std > 0).all()):
        return None
    corr = cov / np.outer(std, std)
    try:
        distance = np.sqrt(np.clip((1.0 - corr) / 2.0, a_min=0.0, a_max=1.0))
        order = _leaves(sch.linkage(ssd.squareform(distance, checks=False), "single"))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    weights = _bisection(cov, np.asarray(order))
    return {symbols[i]: float(weights[i]) for i in sorted(range(len(symbols)), key=lambda i: symbols[i])}


def _leaves(link: np.ndarray) -> list[int]:
    """The leaves of a linkage matrix (scipy's, from `linkage`) from left to right: what
    `to_tree(link).pre_order()` gives (a merged cluster's left child is its row's first column),
    without building a ClusterNode per cluster and validating the matrix `linkage` just made."""
    count = len(link) + 1
    children = link[:, :2].astype(np.int64).tolist()
    order, stack = [], [2 * count - 2]
    while stack:
        node = stack.pop()
        if node < count:
            order.append(node)
        else:
            left, right = children[node - count]
            stack += (right, left)
    return order


def _cluster_variance(cov: np.ndarray, items: np.ndarray) -> float:
    """The variance of the inverse-variance portfolio of a cluster (HRPOpt._get_cluster_var)."""
    block = cov[np.ix_(items, items)]
    weights = 1 / np.diag(block)
    weights /= weights.sum()
    return float(weights @ block @ weights)


def _bisection(cov: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """HRPOpt._raw_hrp_allocation: split each cluster in halves, top down, giving each half the
    share 1 - its variance / the pair's variance."""
    weights = np.ones(len(ordered))
    clusters = [ordered]
    while clusters:
        clusters = [half for cluster in clusters if len(cluster) > 1
                    for half in (cluster[:len(cluster) // 2], cluster[len(cluster) // 2:])]
        for first, second in zip(clusters[::2], clusters[1::2], strict=True):
            first_variance, second_variance = _cluster_variance(cov, first), _cluster_variance(cov, second)
            alpha = 1 - first_variance / (first_variance + second_variance)
            weights[first] *= alpha
            weights[second] *= 1 - alpha
    return weights
