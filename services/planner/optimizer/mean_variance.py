"""Mean-variance weights with the original's fallback chain (planner.md section 3 "Mean-variance").
Pure.

At each relaxation level of the sector constraints (full, minimums halved, none) the objectives
are tried in order: `efficient_return(target)`, `min_volatility`, `efficient_risk(0.15)`,
`max_sharpe`; the first that solves gives the weights (`clean_weights`). The solver is named, so
the same inputs give the same weights. Whether `efficient_return`'s target can be reached is
told from the bounds (`highest_return`) when it clearly can or cannot, instead of by the
highest-return LP PyPortfolioOpt solves first; the weights are the same.

Without sector constraints, `efficient_return` (when its target is clearly reachable) and
`min_volatility` solve a compiled program: PyPortfolioOpt's problem for the objective (the same
variance objective and constraints, in the same order) with the covariance, returns, bounds and
target as cvxpy Parameters, compiled once per (objective, number of securities) and solved again
with new values. cvxpy's canonicalisation of a problem this small costs several times its solve;
the compiled program hands Clarabel the same matrices, so the weights are the same bits
(tests/test_planner_optimizer.py compares the problem data and the weights with
PyPortfolioOpt's). Exact zeros in the covariance or the returns, which cvxpy drops from a
constant problem's matrices but not from a parameter's, and a covariance that is not exactly
symmetric go through PyPortfolioOpt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from services.planner import defaults
from services.planner.optimizer.bounds import Bounds
from services.planner.optimizer.sectors import SectorConstraint

if TYPE_CHECKING:  # at run time imported where used (bench/footprint.py: they are heavy)
    from pypfopt import EfficientFrontier

SOLVER = "CLARABEL"  # interior point, deterministic; solves every objective here (QP and SOCP)
# How far the target return must be from the highest one for highest_return to decide whether
# it is reachable (far above the solver's tolerance; nearer, the solver decides as before).
CLEAR_MARGIN = 1e-4
COMPILED = ("efficient_return", "min_volatility")  # the objectives with a compiled program
# A covariance whose smallest eigenvalue (LAPACK, error ~1e-15 here) is at least this is positive
# semidefinite beyond doubt for cvxpy's tests (a constant's: >= -1e-10, settings.EIGVAL_TOL; a
# PSD parameter's: projection distance <= 1e-8), which then need not be made (their ARPACK and
# SVD runs cost more than the solve). Ledoit-Wolf's shrinkage keeps it far above (its target's
# eigenvalues are the mean variance); nearer, cvxpy's own tests decide as before.
CLEARLY_PSD = 1e-9
PROGRAMS_KEPT = 16  # compiled programs kept, the least recently used dropped first


@dataclass(frozen=True)
class MeanVarianceResult:
    weights: dict[str, float]  # sums to 1
    level: str                 # full, relaxed_sectors or no_sectors
    objective: str             # efficient_return, min_volatility, efficient_risk or max_sharpe


def _objectives(target_return: float, target_volatility: float) -> list[tuple[str, Callable]]:
    return [
        ("efficient_return", lambda f: f.efficient_return(target_return=float(target_return))),
        ("min_volatility", lambda f: f.min_volatility()),
        ("efficient_risk", lambda f: f.efficient_risk(target_volatility=float(target_volatility))),
        ("max_sharpe", lambda f: f.max_sharpe(risk_free_rate=0.0)),
    ]


def _add_sectors(frontier: EfficientFrontier, constraints: list[SectorConstraint], symbols: Sequence[str]) -> None:
    """The sector ranges on a frontier whose tickers are the positions of `symbols`."""
    position = {symbol: i for i, symbol in enumerate(symbols)}
    for kind in sorted({c.kind for c in constraints}):
        of_kind = [c for c in constraints if c.kind == kind]
        mapper = {position[symbol]: c.name for c in of_kind for symbol in c.symbols if symbol in position}
        frontier.add_sector_constraints(mapper, {c.name: c.lower for c in of_kind},
                                        {c.name: c.upper for c in of_kind})


def mean_variance(symbols: Sequence[str], mu: np.ndarray, cov: np.ndarray, bounds: Bounds,
                  levels: list[tuple[str, list[SectorConstraint]]],
                  target_return: float = defaults.OPTIMIZER_TARGET_RETURN,
                  target_volatility: float = defaults.TARGET_VOLATILITY,
                  solver: str = SOLVER) -> MeanVarianceResult | None:
    """The first (level, objective) that solves, or None when none does. `mu` (annual expected
    returns) and `cov` (annualised covariance, symbols x symbols) are in the order of `symbols`;
    `bounds` has an entry per symbol."""
    import cvxpy as cp  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)
    from pypfopt.exceptions import OptimizationError  # noqa: PLC0415

    weight_bounds = [(bounds.lower[s], bounds.upper[s]) for s in symbols]
    highest = highest_return(mu, weight_bounds)
    compiled = _compilable(mu, cov)
    for level, constraints in levels:
        for objective, run in _objectives(target_return, target_volatility):
            clear = None if objective != "efficient_return" or highest is None else float(target_return) - highest
            if clear is not None and clear > CLEAR_MARGIN:
                continue  # above the highest return: efficient_return raises (ValueError)
            reachable = clear is not None and clear < -CLEAR_MARGIN
            fast = compiled and not constraints and objective in COMPILED \
                and (reachable or objective != "efficient_return")
            try:
                weights = _solve_compiled(objective, symbols, mu, cov, weight_bounds, target_return, solver) \
                    if fast else None
                if weights is None:
                    weights = _solve_frontier(run, symbols, mu, cov, weight_bounds, constraints,
                                              highest if reachable and not constraints else None, solver)
            except (OptimizationError, ValueError, cp.error.SolverError):
                continue  # infeasible, or the objective does not apply (no return above 0, ...)
            return MeanVarianceResult(weights, level, objective)
    return None


def _solve_frontier(run: Callable, symbols: Sequence[str], mu: np.ndarray, cov: np.ndarray,
                    weight_bounds: list[tuple[float, float]], constraints: list[SectorConstraint],
                    highest: float | None, solver: str) -> dict[str, float]:
    """PyPortfolioOpt's EfficientFrontier for one objective, `clean_weights` by symbol;
    `highest`, when given, is the highest return efficient_return compares its target with."""
    from pypfopt import EfficientFrontier  # noqa: PLC0415 - as in mean_variance

    frontier = EfficientFrontier(mu, cov, weight_bounds=weight_bounds, solver=solver)
    _add_sectors(frontier, constraints, symbols)
    if highest is not None:
        # efficient_return would solve the highest-return LP only to compare the target with it
        frontier._max_return_value = highest  # noqa: SLF001 - the value it compares with
    run(frontier)
    return {symbols[i]: w for i, w in frontier.clean_weights(rounding=None).items()}


def _compilable(mu: np.ndarray, cov: np.ndarray) -> bool:
    """Whether a compiled program gets PyPortfolioOpt's matrices: no exact zero in `mu` or `cov`
    (cvxpy drops a constant's zeros from the matrices it builds, a parameter's it keeps), a
    covariance exactly symmetric and finite, and positive semidefinite by the test cvxpy makes
    of a constant (else PyPortfolioOpt's problem is refused as not convex, and so is this one)."""
    import cvxpy as cp  # noqa: PLC0415 - as in mean_variance

    return bool(np.isfinite(cov).all() and (cov != 0).all() and (mu != 0).all() and np.array_equal(cov, cov.T)
                and (_clearly_psd(cov) or cp.Constant(cov).is_psd()))


def _clearly_psd(cov: np.ndarray) -> bool:
    """Whether a finite symmetric `cov`'s smallest eigenvalue is at least CLEARLY_PSD."""
    return bool(np.linalg.eigvalsh(cov)[0] >= CLEARLY_PSD)


@dataclass(frozen=True)
class _Program:
    """PyPortfolioOpt's problem for an objective (efficient_frontier.py `efficient_return` or
    `min_volatility` after `_map_bounds_to_constraints`) with its data as Parameters."""

    problem: Any        # cvxpy Problem
    weights: Any        # its Variable
    parameters: dict[str, Any]


_programs: OrderedDict[tuple[str, int], _Program] = OrderedDict()
_programs_lock = threading.Lock()  # a program's parameters hold one solve's data at a time


def _program(objective: str, count: int) -> _Program:
    import cvxpy as cp  # noqa: PLC0415 - as in mean_variance

    key = (objective, count)
    if key in _programs:
        _programs.move_to_end(key)
        return _programs[key]
    w = cp.Variable(count)
    parameters = {"cov": cp.Parameter((count, count), PSD=True), "lower": cp.Parameter(count),
                  "upper": cp.Parameter(count)}
    constraints = [w >= parameters["lower"], w <= parameters["upper"]]
    if objective == "efficient_return":
        parameters |= {"mu": cp.Parameter(count), "target_return": cp.Parameter(name="target_return")}
        constraints.append(1 * (w @ parameters["mu"]) >= parameters["target_return"])  # portfolio_return, sign 1
    constraints.append(cp.sum(w) == 1)
    _programs[key] = _Program(cp.Problem(cp.Minimize(cp.quad_form(w, parameters["cov"])), constraints), w, parameters)
    if len(_programs) > PROGRAMS_KEPT:
        _programs.popitem(last=False)
    return _programs[key]


def _solve_compiled(objective: str, symbols: Sequence[str], mu: np.ndarray, cov: np.ndarray,
                    weight_bounds: list[tuple[float, float]], target_return: float,
                    solver: str) -> dict[str, float] | None:
    """The objective's weights from its compiled program, as PyPortfolioOpt gives them
    (base_optimizer.py `_solve_cvxpy_opt_problem`, then `clean_weights(rounding=None)`); None
    when cvxpy refuses the data as a parameter value. Raises OptimizationError when the solver
    finds no optimum (as PyPortfolioOpt does)."""
    import cvxpy as cp  # noqa: PLC0415 - as in mean_variance
    from pypfopt.base_optimizer import BaseOptimizer  # noqa: PLC0415
    from pypfopt.exceptions import OptimizationError  # noqa: PLC0415

    limits = np.array(weight_bounds, dtype=float)
    with _programs_lock:
        program = _program(objective, len(symbols))
        values = {"cov": cov, "lower": np.nan_to_num(limits[:, 0], nan=-np.inf),
                  "upper": np.nan_to_num(limits[:, 1], nan=np.inf), "mu": mu, "target_return": float(target_return)}
        clear = cov.dtype == np.float64 and cov.shape == (len(symbols), len(symbols)) and _clearly_psd(cov)
        try:
            for name, parameter in program.parameters.items():
                value = values[name]
                if clear if name == "cov" else _plain(value, parameter.shape):
                    parameter.save_value(value)  # what `value =` stores, its checks passing (see _plain)
                else:
                    parameter.value = value
        except ValueError:
            return None  # a covariance cvxpy's parameter check refuses: PyPortfolioOpt's problem decides
        try:
            program.problem.solve(solver=solver, verbose=False, warm_start=False)  # a fresh solve, as the first
        except (TypeError, cp.DCPError) as e:
            raise OptimizationError from e
        if program.problem.status not in {"optimal", "optimal_inaccurate"}:
            raise OptimizationError(f"Solver status: {program.problem.status}")
        output = BaseOptimizer(len(symbols), list(symbols))
        output.weights = program.weights.value.round(16) + 0.0  # +0.0 removes signed zero
    return dict(output.clean_weights(rounding=None))


def _plain(value: Any, shape: tuple[int, ...]) -> bool:
    """Whether cvxpy's check of a Parameter without attributes passes for `value` and keeps it
    as it is: float64 (a float or an array) of the parameter's shape, without NaN (what the check
    refuses besides another shape; an infinite bound passes)."""
    array = np.asarray(value)
    return array.dtype == np.float64 and array.shape == shape and not np.isnan(array).any()


def highest_return(mu: np.ndarray, weight_bounds: list[tuple[float, float]]) -> float | None:
    """The highest return mu . w with lower <= w <= upper and sum(w) = 1 (PyPortfolioOpt's
    `_max_return` without sector constraints, an upper bound of it with them): each weight at its
    lower bound, the rest given to the highest returns first (a fractional knapsack). None when
    the bounds do not allow sum(w) = 1 clearly (then the solver decides)."""
    lower = np.array([low for low, _ in weight_bounds], dtype=float)
    upper = np.array([high for _, high in weight_bounds], dtype=float)
    left = 1.0 - lower.sum()
    if left < CLEAR_MARGIN or upper.sum() < 1.0 + CLEAR_MARGIN or not np.isfinite(mu).all():
        return None
    weights = lower.copy()
    for index in np.argsort(-mu, kind="stable"):
        step = min(upper[index] - lower[index], left)
        weights[index] += step
        left -= step
    return float(mu @ weights)
