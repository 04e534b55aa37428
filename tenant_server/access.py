"""Who may talk to a tenant, from where, and for what.

Without ``AllowedCallers`` a tenant follows Orthanc's global rules as the plugin does
(``DicomAlwaysAllow*``, ``DicomModalities`` and their ``Allow*`` flags), but the host is
checked on every request when ``DicomCheckModalityHost`` is set, not only in the plugin's
corner case. With ``AllowedCallers`` the tenant has its own list: calling AET, optional
hosts, and the operations each caller may use.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import lru_cache

from tenant_server.config import Caller, DicomSettings, Modality, TenantSettings

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4
REJECT_CALLING_AET = (0x01, 0x01, 0x03)
REJECT_CALLED_AET = (0x01, 0x01, 0x07)
REJECT_LIMIT = (0x02, 0x03, 0x02)  # transient, presentation, local limit exceeded


@lru_cache(maxsize=256)
def _addresses(host: str) -> frozenset[str]:
    """A configured host as IP addresses (a name is resolved once and cached)."""
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset({host})


def host_matches(configured: str, peer_ip: str) -> bool:
    return configured == peer_ip or peer_ip in _addresses(configured)


@dataclass(frozen=True)
class AccessPolicy:
    tenant: TenantSettings
    dicom: DicomSettings

    def same_aet(self, a: str, b: str) -> bool:
        a, b = a.strip(), b.strip()
        return a == b if self.dicom.strict_aet_comparison else a.upper() == b.upper()

    def modality_for(self, aet: str) -> Modality | None:
        """First modality with that AET by symbolic name, as Orthanc looks it up."""
        matches = sorted(
            (m for m in self.dicom.modalities if self.same_aet(m.aet, aet)), key=lambda m: m.name
        )
        return matches[0] if matches else None

    def _callers(self, aet: str, peer_ip: str) -> list[Caller]:
        return [
            c
            for c in self.tenant.allowed_callers or ()
            if self.same_aet(c.aet, aet) and (not c.hosts or any(host_matches(h, peer_ip) for h in c.hosts))
        ]

    def association_refusal(
        self, calling_aet: str, called_aet: str, peer_ip: str
    ) -> tuple[int, int, int] | None:
        """Why an association must be rejected, as A-ASSOCIATE-RJ codes, or None to accept."""
        if self.dicom.check_called_aet and not self.same_aet(called_aet, self.tenant.aet):
            return REJECT_CALLED_AET
        if self.tenant.allowed_callers is not None:
            return None if self._callers(calling_aet, peer_ip) else REJECT_CALLING_AET
        if any(self.dicom.always_allow.values()):
            return None
        modality = self.modality_for(calling_aet)
        if modality is None or (self.dicom.check_modality_host and not host_matches(modality.host, peer_ip)):
            return REJECT_CALLING_AET
        return None

    def permits(self, operation: str, calling_aet: str, peer_ip: str) -> bool:
        """Whether this caller may use this operation (Echo, Find, Move, Get, Store) now."""
        if self.tenant.allowed_callers is not None:
            return any(operation in c.permissions for c in self._callers(calling_aet, peer_ip))
        if self.dicom.always_allow.get(operation, False):
            return True
        modality = self.modality_for(calling_aet)
        if modality is None or operation not in modality.permissions:
            return False
        return not self.dicom.check_modality_host or host_matches(modality.host, peer_ip)

    def move_destination(self, aet: str) -> Modality | None:
        """The modality a C-MOVE may send to, or None (answered 0xA801)."""
        modality = self.modality_for(aet)
        allowed = self.tenant.allowed_move_destinations
        if modality is None or (allowed is not None and modality.name not in allowed):
            return None
        return modality
