"""``python -m local_orthanc build-root`` builds the cached Debian 13 root ahead of time;
``python -m local_orthanc run`` starts a throw-away Orthanc and prints how to reach it."""

from __future__ import annotations

import argparse
import signal
import sys

from local_orthanc.provision import find_runtime
from local_orthanc.root import ensure_root
from local_orthanc.server import LocalOrthanc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_orthanc")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build-root", help="build the cached Debian 13 root with Orthanc 1.12")
    run = sub.add_parser("run", help="run a throw-away Orthanc until Ctrl-C")
    run.add_argument("--plugin", action="store_true", help="load the official MultitenantDicom plugin")
    args = parser.parse_args(argv)
    if args.command == "build-root":
        print(ensure_root())
        return 0
    orthanc = LocalOrthanc(runtime=find_runtime(), with_plugin=args.plugin).start()
    print(f"Orthanc at {orthanc.url} user {orthanc.username} password {orthanc.password}", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
