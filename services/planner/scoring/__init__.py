"""Security scoring as the original scored it (planner.md section 1; decisions.md wins).

One small module per group: long_term, fundamentals, opportunity, dividends, short_term,
technicals, opinion, diversification; `security` combines them with the fixed weights into the
total and the planner's quality score; `sell` scores holdings for selling; `windfall` measures
luck in a gain; `end_state` holds the portfolio score (0..100) and the end-state score (0..1),
vectorised over many candidate portfolios. Pure functions of plain data (`inputs`): no gRPC,
no SQL, no clock.
"""
