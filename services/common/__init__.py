"""Shared plumbing for every service: bootstrap, clients, config, database, auth, tracing, clock,
errors, logging. No domain logic lives here."""
