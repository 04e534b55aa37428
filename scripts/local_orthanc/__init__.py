"""Provide a real Orthanc >= 1.12 (with labels) for tests, benchmarks and the demo.

Order of preference (see docs/orthanc-provisioning.md):

1. ``ORTHANC_URL`` names a running server: use it as is (``ORTHANC_USERNAME`` /
   ``ORTHANC_PASSWORD`` give its credentials). Nothing is started or stopped.
2. A system ``Orthanc`` binary of version 1.12 or newer on ``PATH``.
3. A cached Debian 13 root built with ``debootstrap`` (needs root), which ships
   Orthanc 1.12.7 and the official MultitenantDicom plugin, run with ``chroot``.
"""

from local_orthanc.provision import ExternalOrthanc, OrthancHandle, provide_orthanc
from local_orthanc.server import LocalOrthanc, OrthancRuntime

__all__ = ["ExternalOrthanc", "LocalOrthanc", "OrthancHandle", "OrthancRuntime", "provide_orthanc"]
