"""The planner's edge: the other services, read through plain dataclasses."""
