"""`python -m gateway` starts the gateway: its jobs (triggered on the wall clock in paper,
research and live mode) and, with TRADER_REPLAY_AUTOSTART=1, the replay driver (which runs the
jobs of TRADER_REPLAY_JOBS due on each simulated day)."""

import sys

from grpc_health.v1 import health_pb2
from trader.gateway.v1 import gateway_pb2_grpc

from gateway import store
from gateway.config import GatewayConfig, load
from gateway.cycle import Services
from gateway.jobs import JOBS
from gateway.jobs.base import JobPeers
from gateway.replay import REPLAY_GAVE_UP_EXIT, ReplayDriver, ReplayJobs
from gateway.runner import REPLAY, JobRunner, Scheduler
from gateway.server import CycleRunner, GatewayServicer
from services.common import clock
from services.common.client import Clients
from services.common.config import SIMULATED_MODES
from services.common.maintenance import Maintenance, load_settings
from services.common.server import ServiceParts, run_service


def scheduler_name(config: GatewayConfig) -> str:
    """Who triggers the jobs' schedules (ListJobs.scheduler): the wall-clock scheduler, the replay
    driver on its simulated days (a backtest's driver runs in the CLI: "off" here), or nobody."""
    if config.jobs.scheduler:
        return "wall clock"
    return "simulated days" if config.replay.autostart and config.replay.jobs else "off"


def replay_jobs(config: GatewayConfig, jobs: JobRunner) -> ReplayJobs:
    """TRADER_REPLAY_JOBS on their configured schedules (those not `off`), run in this process."""
    def run(name: str) -> tuple[str, str]:
        done = jobs.run(name, REPLAY, clock.now())
        return done.status, done.detail

    schedules = {name: config.jobs.schedules[name] for name in config.replay.jobs}
    return ReplayJobs({name: schedule for name, schedule in schedules.items() if schedule is not None}, run)


_drivers: list[ReplayDriver] = []  # this process's replay driver (at most one)


def build(config: GatewayConfig) -> ServiceParts:
    common = config.common
    settings = load_settings("gateway", common.var_dir, store.RETENTION_RULES)
    db = store.open_database(common.db_url)
    clients = Clients(common)
    services = Services(clients)
    runner = CycleRunner(db, services, simulated=common.mode in SIMULATED_MODES, exchange=config.replay.exchange,
                         follows_replay=config.replay.autostart)
    maintenance = Maintenance(store.SCHEMA, db, settings)
    jobs = JobRunner(db, JOBS, JobPeers(services, runner, maintenance), config.jobs.schedules, services.display)
    scheduler = Scheduler(jobs, config.jobs.schedules, triggering=config.jobs.scheduler)
    servicer = GatewayServicer(common, db, runner, maintenance, jobs, clients, scheduler_name(config))
    drivers = _drivers

    def after_start(running, request_stop):
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        jobs.attach_health(lambda name, ok: running.health.set(name, serving if ok else not_serving))
        scheduler.start()
        if config.replay.autostart:
            # The gateway stops (as on SIGTERM) when the replay ends.
            driver = ReplayDriver(config.replay, common.base_currency, db, services, runner, request_stop,
                                  clients, replay_jobs(config, jobs))
            drivers.append(driver)
            driver.start()

    def close():
        scheduler.stop()
        for driver in drivers:
            driver.stop_requested.set()
            driver.join(timeout=10)
        clients.close()
        db.close()

    return ServiceParts(lambda server: gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server),
                        close, after_start, database=db)


def main() -> int:
    """The gateway's exit code: run_service's, or REPLAY_GAVE_UP_EXIT when its replay gave up
    (the launcher then stops everything and exits 1 instead of restarting it)."""
    code = run_service("gateway", load, build)
    return REPLAY_GAVE_UP_EXIT if code == 0 and any(driver.gave_up for driver in _drivers) else code


if __name__ == "__main__":
    sys.exit(main())
