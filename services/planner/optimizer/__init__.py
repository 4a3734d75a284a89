"""The planner's optimiser (planner.md section 3): expected returns, Ledoit-Wolf risk, bounds,
sector constraints, mean-variance with its fallback chain, HRP, the blend and post-processing.
Pure modules; `optimize` (pipeline.py) runs them in order."""

from services.planner.optimizer.pipeline import (
    AT_CAPS,
    Fallback,
    OptimizerInput,
    OptimizerResult,
    SecurityInput,
    optimize,
)

__all__ = ["AT_CAPS", "Fallback", "OptimizerInput", "OptimizerResult", "SecurityInput", "optimize"]
