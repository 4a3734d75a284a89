"""The Alembic environment of every service: services/common/migrations.py passes the service's
schema and an open connection in the config's attributes."""

from alembic import context

from services.common.migrations import run_env

run_env(context)
