"""Build and locate the cached Debian 13 root that carries Orthanc 1.12.

Debian 12 ships Orthanc 1.10 (no labels); Debian 13 ships 1.12.7 with the official
MultitenantDicom plugin. ``debootstrap --variant=minbase`` builds such a root in
under a minute, and Orthanc runs from it under ``chroot``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"


def cache_dir() -> Path:
    """Where the root lives: outside any work tree, reused across runs."""
    base = os.environ.get("MTDICOM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "multitenant-dicom"
    )
    return Path(base)


def root_path() -> Path:
    return cache_dir() / f"orthanc-{SUITE}-root"


def root_is_ready(root: Path) -> bool:
    return (root / "usr/sbin/Orthanc").exists() and (root / ".complete").exists()


def ensure_root(mirror: str | None = None) -> Path:
    """Return a complete Debian 13 root with Orthanc, building it once if needed.

    The build goes to a temporary folder and is renamed into place at the end, so an
    interrupted build never leaves a half-made root that later runs would trust.
    """
    root = root_path()
    if root_is_ready(root):
        return root
    if os.geteuid() != 0:
        raise RuntimeError(
            "No Orthanc >= 1.12 found. Building one with debootstrap needs root; otherwise "
            "set ORTHANC_URL to a running Orthanc >= 1.12 (e.g. the orthancteam/orthanc "
            "Docker image). See docs/orthanc-provisioning.md."
        )
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: apt-get install debootstrap")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    mirror = mirror or os.environ.get("DEBIAN_MIRROR", DEFAULT_MIRROR)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=orthanc", SUITE, str(partial), mirror],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (partial / ".complete").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root
