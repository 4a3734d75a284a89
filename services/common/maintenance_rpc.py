"""`RunMaintenance` for every service's servicer: trader.common.v1 messages <-> the maintenance
use case (services/common/maintenance.py). A servicer mixes in `MaintenanceRpc` and passes its
`Maintenance` to `use_maintenance` in its constructor."""

from __future__ import annotations

from datetime import datetime

from trader.common.v1 import maintenance_pb2

from services.common import clock
from services.common.errors import FailedPrecondition
from services.common.maintenance import (
    FAILED,
    OK,
    PARTS,
    SKIPPED,
    Maintenance,
    MaintenanceReport,
    MaintenanceRequest,
    PartResult,
    RetentionResult,
)
from services.common.timestamps import to_timestamp

_STATUS = {OK: maintenance_pb2.PART_OK, FAILED: maintenance_pb2.PART_FAILED, SKIPPED: maintenance_pb2.PART_SKIPPED}


def request_from_proto(request: maintenance_pb2.RunMaintenanceRequest) -> MaintenanceRequest:
    return MaintenanceRequest(
        parts=tuple(name for name in PARTS if getattr(request, name)),
        backup_keep_days=request.backup_keep_days if request.HasField("backup_keep_days") else None,
        retention_days=dict(request.retention_days),
        retention_dry_run=request.retention_dry_run,
        vacuum=request.vacuum,
    )


def _retention_to_proto(result: RetentionResult) -> maintenance_pb2.RetentionResult:
    return maintenance_pb2.RetentionResult(
        rule=result.rule, description=result.description, keep_days=result.keep_days,
        cutoff="" if result.cutoff is None else result.cutoff.isoformat(), deleted_rows=result.deleted_rows,
        detail=result.detail)


def _part_to_proto(part: PartResult) -> maintenance_pb2.MaintenancePart:
    message = maintenance_pb2.MaintenancePart(
        name=part.name, status=_STATUS[part.status], duration_ms=part.duration_ms, detail=part.detail,
        removed_backups=[str(path) for path in part.removed_backups],
        retention=[_retention_to_proto(r) for r in part.retention])
    if part.backup is not None:
        message.backup.CopyFrom(maintenance_pb2.BackupFile(
            path=str(part.backup.path), size_bytes=part.backup.size_bytes, integrity=part.backup.integrity,
            schema_revision=part.backup.schema_revision, created_at=to_timestamp(part.backup.created_at)))
    return message


def report_to_proto(report: MaintenanceReport) -> maintenance_pb2.RunMaintenanceResponse:
    return maintenance_pb2.RunMaintenanceResponse(
        service=report.service, backend=report.backend, started_at=to_timestamp(report.started_at),
        duration_ms=report.duration_ms, parts=[_part_to_proto(p) for p in report.parts], ok=report.ok)


class MaintenanceRpc:
    """The RunMaintenance method of a service's servicer."""

    _maintenance: Maintenance | None = None

    def use_maintenance(self, maintenance: Maintenance | None) -> None:
        self._maintenance = maintenance

    def RunMaintenance(self, request, context):
        if self._maintenance is None:  # a servicer built without one (unit tests of other RPCs)
            raise FailedPrecondition("maintenance_unavailable", "this server was started without database maintenance")
        now: datetime = clock.now()
        return report_to_proto(self._maintenance.run(request_from_proto(request), now, clock.wall_now()))
