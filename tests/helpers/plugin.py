"""The official MultitenantDicom plugin's tenants in the session Orthanc.

Our own tenant servers in the tests use the same AETs' labels, so the same request
can be sent to the plugin and to our server over one database.
"""

from __future__ import annotations

from typing import Any

from local_orthanc.server import free_port

PLUGIN_TENANTS: list[dict[str, Any]] = [
    {"AET": "PLUGIN_A", "Port": free_port(), "Labels": ["compat_a"]},
    {"AET": "PLUGIN_B", "Port": free_port(), "Labels": ["compat_b"]},
]


def plugin_config() -> dict[str, Any]:
    """Orthanc configuration that loads the plugin's tenants and lets tests query them.

    Find and Move are opened to every caller, as a test bench would; the plugin reads
    the same flags as Orthanc's own DICOM server.
    """
    return {
        "MultitenantDicom": {"Servers": PLUGIN_TENANTS},
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
    }
