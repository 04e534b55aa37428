"""``tenant-server --config PATH [--server AET ...]``: run tenant DICOM servers until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from tenant_server.audit import configure_logging
from tenant_server.config import ConfigError, load_settings, select_servers
from tenant_server.health import start_health_server
from tenant_server.server import TenantServers

log = logging.getLogger("tenant_server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tenant-server",
        description="Multitenant DICOM servers in front of Orthanc, configured like Orthanc's MultitenantDicom plugin.",
    )
    parser.add_argument("--config", required=True, help="Orthanc-style JSON configuration file")
    parser.add_argument(
        "--server", action="append", metavar="AET", help="serve only this AET (repeatable; default: all)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    # Block before any thread starts (threads inherit the mask): a SIGTERM that arrives
    # while the servers start waits for sigwait below, instead of reaching a thread that
    # does not block it and killing the process with the default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        settings = select_servers(load_settings(args.config), args.server)
    except ConfigError as exc:
        print(f"tenant-server: configuration error: {exc}", file=sys.stderr)
        return 2
    servers = TenantServers(settings)
    try:
        servers.start()
    except RuntimeError as exc:
        print(f"tenant-server: {exc}", file=sys.stderr)
        return 1
    health = (
        start_health_server(servers, settings.bind_address, settings.health_port)
        if settings.health_port
        else None
    )
    received = signal.sigwait(STOP_SIGNALS)
    log.info(
        "stopping",
        extra={
            "fields": {
                "signal": signal.Signals(received).name,
                "associations": servers.active_associations(),
                "grace_period_s": settings.shutdown_grace_period,
            }
        },
    )
    aborted = servers.stop()
    log.info("stopped", extra={"fields": {"aborted_associations": aborted}})
    if health is not None:
        health.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
