"""From mean-variance and HRP weights to target weights (planner.md section 3 "Post-processing",
fact 9 of its pitfalls). Pure.

    w = b HRP + (1 - b) MV   (b = optimizer_blend; one method alone when the other failed)
    -> clamp to the bounds -> drop weights below 0.005 -> normalise to 1 - reserve/value
    -> clamp -> if any |target - current| > 0.3: move halfway (current + 0.5 delta), drop
       below 0.005, renormalise to the same total -> fit

Normalising water-fills (services/planner/optimizer/bounds.py): it never lifts a weight over
its upper bound, so what the caps cannot hold stays cash. `fit`, the last step (not in the
original), makes the sector constraints hold on the reply too: blending with HRP, the cutoff and
the half-step can move a group out of its range; fit then takes the nearest weights (least
squares, the same solver) inside every bound and the group ranges of the level mean-variance
used, with the same total. It changes nothing when every constraint already holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from services.planner import defaults
from services.planner.optimizer.bounds import Bounds, clamped, clamped_cut, normalised
from services.planner.optimizer.mean_variance import SOLVER
from services.planner.optimizer.sectors import SectorConstraint

TOLERANCE = 1e-9


def blend(mean_variance: Mapping[str, float] | None, hrp: Mapping[str, float] | None, share: float) -> dict[str, float]:
    """share x HRP + (1 - share) x MV over the union of symbols; one of them alone when the
    other is None."""
    if mean_variance is None or hrp is None:
        return dict(mean_variance or hrp or {})
    return {s: share * hrp.get(s, 0.0) + (1 - share) * mean_variance.get(s, 0.0)
            for s in sorted(set(mean_variance) | set(hrp))}


def post_process(raw: Mapping[str, float], bounds: Bounds, current: Mapping[str, float], total: float,
                 cutoff: float = defaults.WEIGHT_CUTOFF, threshold: float = defaults.GRADUAL_THRESHOLD,
                 step: float = defaults.GRADUAL_STEP) -> tuple[dict[str, float], bool]:
    """(weights, halfway): the documented order up to the half-step; `current` holds the
    securities' current weights, `total` the share to place (1 - reserve/value)."""
    weights = clamped(normalised(clamped_cut(raw, bounds, cutoff), bounds, total), bounds)
    largest = max((abs(weights.get(s, 0.0) - current.get(s, 0.0)) for s in bounds.upper), default=0.0)
    if largest <= threshold:
        return weights, False
    halfway = {s: current.get(s, 0.0) + step * (weights.get(s, 0.0) - current.get(s, 0.0)) for s in bounds.upper}
    halfway = clamped_cut(halfway, bounds, cutoff)
    return clamped(normalised(halfway, bounds, sum(weights.values())), bounds), True


def violations(weights: Mapping[str, float], bounds: Bounds, constraints: list[SectorConstraint],
               tolerance: float = TOLERANCE) -> list[str]:
    """Every bound or group range the weights break (a group's range is a share of their sum)."""
    found = [f"{s}: {weights.get(s, 0.0):.6f} outside [{low:.6f}, {bounds.upper[s]:.6f}]"
             for s, low in bounds.lower.items()
             if not low - tolerance <= weights.get(s, 0.0) <= bounds.upper[s] + tolerance]
    total = sum(weights.values())
    for c in constraints:
        share = sum(weights.get(s, 0.0) for s in c.symbols)
        if not c.lower * total - tolerance <= share <= c.upper * total + tolerance:
            found.append(f"{c.kind} group {c.name}: {share:.6f} outside [{c.lower * total:.6f}, {c.upper * total:.6f}]")
    return found


def fit(weights: Mapping[str, float], bounds: Bounds, constraints: list[SectorConstraint],
        cutoff: float = defaults.WEIGHT_CUTOFF, solver: str = SOLVER) -> tuple[dict[str, float], bool]:
    """(weights, groups held): the nearest weights with the same total inside every bound and,
    when they can be met, the group ranges; weights below the cutoff are dropped where a
    solution without them exists. Unchanged when nothing is broken."""
    weights = {s: weights.get(s, 0.0) for s in bounds.upper}
    total = sum(weights.values())
    if total <= 0:
        return weights, True
    support = [s for s in sorted(weights) if weights[s] > 0 or bounds.lower.get(s, 0.0) > 0]
    for kept in ([constraints, []] if constraints else [[]]):
        held = bool(kept) or not constraints
        if not violations(weights, bounds, kept):
            return weights, held
        for members in (support, sorted(weights)):
            found = _projected_without_small(weights, members, bounds, kept, total, cutoff, solver)
            if found is not None:
                return {s: found.get(s, 0.0) for s in weights}, held
    return weights, not constraints


def _projected_without_small(weights: dict[str, float], members: list[str], bounds: Bounds,
                             constraints: list[SectorConstraint], total: float, cutoff: float,
                             solver: str) -> dict[str, float] | None:
    best = None
    while members:
        found = _projected(weights, members, bounds, constraints, total, solver)
        if found is None:
            return best
        best = found
        small = {s for s, w in found.items() if 0 < w < cutoff and bounds.lower.get(s, 0.0) <= 0}
        if not small:
            return found
        members = [s for s in members if s not in small]
    return best


def _projected(weights: dict[str, float], members: list[str], bounds: Bounds, constraints: list[SectorConstraint],
               total: float, solver: str) -> dict[str, float] | None:
    """argmin ||w - weights||^2 over `members` (the others 0) subject to the bounds, sum(w) =
    total and lower x total <= group sum <= upper x total; None when infeasible."""
    low = np.array([bounds.lower.get(s, 0.0) for s in members])
    high = np.array([bounds.upper[s] for s in members])
    if low.sum() > total + TOLERANCE or high.sum() < total - TOLERANCE:
        return None
    import cvxpy as cp  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)

    w = cp.Variable(len(members))
    rules = [w >= low, w <= high, cp.sum(w) == total]
    for c in constraints:
        mask = np.array([1.0 if s in c.symbols else 0.0 for s in members])
        rules += [mask @ w >= c.lower * total, mask @ w <= c.upper * total]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(w - np.array([weights[s] for s in members]))), rules)
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError:
        return None
    if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
        return None
    values = np.clip(w.value, low, high)
    values[(values < TOLERANCE) & (low <= 0)] = 0.0
    return {s: float(v) for s, v in zip(members, values, strict=True)}
