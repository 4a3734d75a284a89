"""maintenance: daily at 03:00, each service maintains its own database in turn (README,
"Maintenance and backups"): a verified backup, retention, ANALYZE/VACUUM and the WAL
checkpoint, through each service's RunMaintenance, the gateway's own last
(trading-portfolio-jobs.md section 7, data-display.md section 8).

A part a backend lacks (a backup on PostgreSQL: pg_dump) is left out for that service and said
so; the job FAILED when any service could not be asked or a part failed, after asking them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import grpc
from trader.common.v1 import maintenance_pb2

from gateway.jobs.base import Job, JobFailed, JobPeers, rpc_problem
from services.common import clock
from services.common.errors import DomainError
from services.common.maintenance import MaintenanceRequest
from services.common.maintenance_rpc import report_to_proto

NAME = "maintenance"
DEFAULT_SCHEDULE = "0 3 * * *"
DAILY_PARTS = ("backup", "retention", "optimize", "checkpoint")
SERVICES = ("data", "portfolio", "planner", "trading", "display")  # then the gateway's own database
CALL_TIMEOUT_S = 900.0  # a VACUUM of a large database takes a while; the default deadline is seconds
_STATUS = {maintenance_pb2.PART_OK: "ok", maintenance_pb2.PART_FAILED: "FAILED",
           maintenance_pb2.PART_SKIPPED: "skipped"}

Ask = Callable[[tuple[str, ...]], maintenance_pb2.RunMaintenanceResponse]


def _lacking(exc: Exception, parts: Sequence[str]) -> str | None:
    """The part a `<part>_unavailable` refusal names, if `exc` is one."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            return None
        message = exc.details() or ""
    elif isinstance(exc, DomainError):
        message = exc.message
    else:
        return None
    return next((part for part in parts if message.startswith(f"{part}_unavailable:")), None)


def _ask_available(ask: Ask, parts: Sequence[str]) -> tuple[maintenance_pb2.RunMaintenanceResponse | None, list[str]]:
    """`ask(parts)`, leaving out the parts the backend refuses as unavailable; (reply, notes)."""
    remaining, notes = list(parts), []
    while remaining:
        try:
            return ask(tuple(remaining)), notes
        except Exception as exc:
            part = _lacking(exc, remaining)
            if part is None:
                raise
            remaining.remove(part)
            notes.append(f"{part} not on this backend")
    return None, notes


def _summary(reply: maintenance_pb2.RunMaintenanceResponse) -> tuple[str, list[str]]:
    """One line for the service, and its failed parts."""
    said, failed = [], []
    for part in reply.parts:
        status = _STATUS.get(part.status, "?")
        if part.name == "backup" and part.status == maintenance_pb2.PART_OK:
            said.append(f"backup {part.backup.path} ({part.backup.size_bytes / 1e6:.1f} MB, integrity "
                        f"{part.backup.integrity})")
        elif part.status == maintenance_pb2.PART_FAILED:
            said.append(f"{part.name} FAILED: {part.detail}")
            failed.append(part.name)
        else:
            said.append(f"{part.name} {status}")
    return ", ".join(said), failed


def _remote(stub) -> Ask:
    def ask(chosen: tuple[str, ...]) -> maintenance_pb2.RunMaintenanceResponse:
        return stub.RunMaintenance(maintenance_pb2.RunMaintenanceRequest(**dict.fromkeys(chosen, True)),
                                   timeout=CALL_TIMEOUT_S)
    return ask


def maintain_every_service(peers: JobPeers, parts: Sequence[str], now: datetime) -> str:
    """RunMaintenance with `parts` on every service in turn, then on the gateway's database.
    Returns one line per service; raises JobFailed (with every line) when any did not succeed."""
    askers: list[tuple[str, Ask]] = [(service, _remote(getattr(peers.services, service))) for service in SERVICES]
    if peers.maintenance is not None:
        own = peers.maintenance
        askers.append(("gateway", lambda chosen: report_to_proto(
            own.run(MaintenanceRequest(parts=tuple(chosen)), now, clock.wall_now()))))
    lines, problems = [], []
    for service, ask in askers:
        try:
            reply, notes = _ask_available(ask, parts)
        except grpc.RpcError as exc:
            lines.append(f"{service}: {rpc_problem(exc)}")
            problems.append(service)
            continue
        except DomainError as exc:
            lines.append(f"{service}: {exc.message}")
            problems.append(service)
            continue
        said, failed = _summary(reply) if reply is not None else ("", [])
        lines.append(f"{service}: " + "; ".join(filter(None, [said, *notes])))
        problems += [f"{service} {part}" for part in failed]
    text = "\n".join(lines)
    if problems:
        raise JobFailed(f"did not succeed: {', '.join(problems)}\n{text}")
    return text


def run(peers: JobPeers, now: datetime) -> str:
    return maintain_every_service(peers, DAILY_PARTS, now)


JOB = Job(NAME, "Every service's database: verified backup, retention, optimize, WAL checkpoint",
          DEFAULT_SCHEDULE, run)
