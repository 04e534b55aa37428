"""Choose where an Orthanc comes from: a running server, a system binary, or the cached root."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any, Protocol

from local_orthanc.root import ensure_root
from local_orthanc.server import LocalOrthanc, OrthancRuntime

MINIMUM_VERSION = (1, 12, 5)  # labels (1.12.0) and the extended /tools/find (1.12.5)


class OrthancHandle(Protocol):
    """What callers need from an Orthanc, wherever it comes from."""

    @property
    def url(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class ExternalOrthanc:
    """An Orthanc someone else runs (``ORTHANC_URL``): never started or stopped here."""

    url: str
    username: str
    password: str

    def stop(self) -> None:
        return None


def find_runtime() -> OrthancRuntime:
    """A system ``Orthanc`` >= 1.12.5 if there is one, else the cached Debian 13 root."""
    binary = shutil.which("Orthanc")
    if binary:
        runtime = OrthancRuntime(binary=binary)
        if runtime.version() >= MINIMUM_VERSION:
            return runtime
    return OrthancRuntime(binary="/usr/sbin/Orthanc", chroot=ensure_root())


def provide_orthanc(extra_config: dict[str, Any] | None = None, with_plugin: bool = False) -> OrthancHandle:
    """An Orthanc ready to use; call ``stop()`` on it when done.

    ``ORTHANC_URL`` wins unless the caller needs a configured instance (plugin or extra
    configuration), which only a server started here can provide.
    """
    url = os.environ.get("ORTHANC_URL")
    if url and not extra_config and not with_plugin:
        return ExternalOrthanc(
            url=url.rstrip("/"),
            username=os.environ.get("ORTHANC_USERNAME", ""),
            password=os.environ.get("ORTHANC_PASSWORD", ""),
        )
    local = LocalOrthanc(runtime=find_runtime(), extra_config=extra_config or {}, with_plugin=with_plugin)
    return local.start()
