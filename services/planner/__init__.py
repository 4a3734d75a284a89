"""Planner service (trader.planner.v1.Planner)."""
