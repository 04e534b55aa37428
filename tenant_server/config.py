"""Read an Orthanc-style JSON configuration into validated, immutable settings.

The file has the shape of Orthanc's own ``orthanc.json`` so an existing configuration
with a ``MultitenantDicom`` section works unchanged. Every problem is reported as one
``ConfigError`` naming the key (and the server), before any tenant starts: never half
the tenants silently.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

LEVELS = ("Patient", "Study", "Series", "Instance")
OPERATIONS = ("Echo", "Find", "Move", "Get", "Store")
CONSTRAINTS = ("All", "Any", "None")
ISOLATION_POLICIES = ("Strict", "Off")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AET_PATTERN = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII, no backslash
_LEVEL_ALIASES = {
    "patient": "Patient",
    "patients": "Patient",
    "study": "Study",
    "studies": "Study",
    "series": "Series",
    "instance": "Instance",
    "instances": "Instance",
    "image": "Instance",
    "images": "Instance",
}
_ALWAYS_ALLOW_DEFAULTS = {"Echo": True, "Find": False, "Move": False, "Get": False, "Store": True}


class ConfigError(ValueError):
    """A configuration problem, worded for the administrator who must fix it."""


@dataclass(frozen=True)
class OrthancConnection:
    url: str
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


@dataclass(frozen=True)
class Modality:
    """One ``DicomModalities`` entry: a peer that may call us or receive C-MOVEs."""

    name: str
    aet: str
    host: str
    port: int
    permissions: frozenset[str] = frozenset(OPERATIONS)


@dataclass(frozen=True)
class Caller:
    """An entry of a server's ``AllowedCallers``: who may call this tenant, from where, for what."""

    aet: str
    hosts: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset(OPERATIONS)


@dataclass(frozen=True)
class TlsSettings:
    certificate: str
    private_key: str
    trusted_certificates: str | None = None
    require_client_certificate: bool = False


@dataclass(frozen=True)
class TenantSettings:
    """One tenant DICOM server: the plugin's keys plus this project's extensions."""

    aet: str
    port: int
    labels: tuple[str, ...]
    constraint: str = "All"
    store_levels: tuple[str, ...] = ("Study", "Series", "Instance")
    allowed_callers: tuple[Caller, ...] | None = None
    allowed_move_destinations: tuple[str, ...] | None = None
    store_isolation: str = "Strict"
    max_associations: int = 64
    max_associations_per_caller: int | None = None
    tls: TlsSettings | None = None


@dataclass(frozen=True)
class DicomSettings:
    """Global DICOM options every tenant shares, as in Orthanc."""

    modalities: tuple[Modality, ...] = ()
    always_allow: Mapping[str, bool] = field(default_factory=lambda: dict(_ALWAYS_ALLOW_DEFAULTS))
    strict_aet_comparison: bool = False
    check_called_aet: bool = False
    check_modality_host: bool = False
    scp_timeout: float = 30.0
    maximum_pdu_length: int = 16384
    default_encoding: str = "Utf8"
    case_sensitive_pn: bool = False
    limit_find_results: int = 0
    limit_find_instances: int = 0


@dataclass(frozen=True)
class Settings:
    orthanc: OrthancConnection
    dicom: DicomSettings
    servers: tuple[TenantSettings, ...]
    health_port: int = 8080
    bind_address: str = "0.0.0.0"
    shutdown_grace_period: float = 30.0
    audit_query_values: bool = False


# --- small typed readers that name the key in their errors ----------------------------


def _where(key: str, server: str | None) -> str:
    return f'"{key}" of server "{server}"' if server else f'"{key}"'


def _bool(data: Mapping[str, Any], key: str, default: bool, server: str | None = None) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(key, server)} must be true or false, got {value!r}")
    return value


def _int(
    data: Mapping[str, Any],
    key: str,
    default: int | None,
    low: int,
    high: int,
    server: str | None = None,
) -> int:
    value = data.get(key, default)
    if value is None:
        raise ConfigError(f"{_where(key, server)} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{_where(key, server)} must be an integer from {low} to {high}, got {value!r}")
    return value


def _str_list(data: Mapping[str, Any], key: str, server: str | None) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_where(key, server)} must be a list of strings, got {value!r}")
    return value


def _aet(value: Any, key: str, server: str | None) -> str:
    if not isinstance(value, str) or not AET_PATTERN.match(value) or not value.strip():
        raise ConfigError(
            f"{_where(key, server)} must be an AE title of 1 to 16 printable characters "
            f"without backslash, got {value!r}"
        )
    return value.strip()


def _permissions(value: Any, key: str, server: str | None) -> frozenset[str]:
    if not isinstance(value, list) or any(v not in OPERATIONS for v in value):
        raise ConfigError(
            f"{_where(key, server)} must list operations among {list(OPERATIONS)}, got {value!r}"
        )
    return frozenset(value)


# --- sections -------------------------------------------------------------------------


def parse_modalities(raw: Any) -> tuple[Modality, ...]:
    """``DicomModalities`` in both of Orthanc's forms: ``[AET, host, port]`` or an object."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError('"DicomModalities" must be an object of name -> modality')
    modalities = []
    for name, entry in raw.items():
        key = f"DicomModalities.{name}"
        if isinstance(entry, list):
            if len(entry) < 3:
                raise ConfigError(f'"{key}" must be [AET, host, port], got {entry!r}')
            aet, host, port = entry[0], entry[1], entry[2]
            permissions = frozenset(OPERATIONS)
        elif isinstance(entry, dict):
            aet, host, port = entry.get("AET"), entry.get("Host"), entry.get("Port")
            permissions = frozenset(op for op in OPERATIONS if _bool(entry, f"Allow{op}", True, None) is True)
        else:
            raise ConfigError(f'"{key}" must be [AET, host, port] or an object, got {entry!r}')
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if not isinstance(host, str) or not host:
            raise ConfigError(f'"{key}.Host" must be a host name or address, got {host!r}')
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f'"{key}.Port" must be an integer from 1 to 65535, got {port!r}')
        modalities.append(Modality(name, _aet(aet, f"{key}.AET", None), host, port, permissions))
    return tuple(modalities)


def parse_dicom(raw: Mapping[str, Any]) -> DicomSettings:
    always_allow = {
        op: _bool(raw, f"DicomAlwaysAllow{op}", default) for op, default in _ALWAYS_ALLOW_DEFAULTS.items()
    }
    encoding = raw.get("DefaultEncoding", "Utf8")
    if not isinstance(encoding, str):
        raise ConfigError(f'"DefaultEncoding" must be a string, got {encoding!r}')
    return DicomSettings(
        modalities=parse_modalities(raw.get("DicomModalities")),
        always_allow=always_allow,
        strict_aet_comparison=_bool(raw, "StrictAetComparison", False),
        check_called_aet=_bool(raw, "DicomCheckCalledAet", False),
        check_modality_host=_bool(raw, "DicomCheckModalityHost", False),
        scp_timeout=float(_int(raw, "DicomScpTimeout", 30, 1, 86400)),
        maximum_pdu_length=_int(raw, "MaximumPduLength", 16384, 4096, 131072),
        default_encoding=encoding,
        case_sensitive_pn=_bool(raw, "CaseSensitivePN", False),
        limit_find_results=_int(raw, "LimitFindResults", 0, 0, 2**31 - 1),
        limit_find_instances=_int(raw, "LimitFindInstances", 0, 0, 2**31 - 1),
    )


def parse_callers(raw: Any, server: str) -> tuple[Caller, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ConfigError(f"{_where('AllowedCallers', server)} must be a list")
    callers = []
    for entry in raw:
        if isinstance(entry, str):
            callers.append(Caller(_aet(entry, "AllowedCallers", server)))
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"{_where('AllowedCallers', server)} entries must be AETs or objects")
        hosts = _str_list(entry, "Hosts", server) or []
        permissions = entry.get("Permissions", list(OPERATIONS))
        callers.append(
            Caller(
                _aet(entry.get("AET"), "AllowedCallers.AET", server),
                tuple(hosts),
                _permissions(permissions, "AllowedCallers.Permissions", server),
            )
        )
    return tuple(callers)


def parse_tls(raw: Any, server: str) -> TlsSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where('Tls', server)} must be an object")
    for key in ("Certificate", "PrivateKey"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{_where('Tls.' + key, server)} must be a file path")
    trusted = raw.get("TrustedCertificates")
    require = _bool(raw, "RequireClientCertificate", False, server)
    if require and not isinstance(trusted, str):
        raise ConfigError(
            f"{_where('Tls.TrustedCertificates', server)} is required when RequireClientCertificate is true"
        )
    return TlsSettings(raw["Certificate"], raw["PrivateKey"], trusted, require)


def parse_store_levels(raw: Any, server: str) -> tuple[str, ...]:
    if raw is None:
        return ("Study", "Series", "Instance")
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f"{_where('LabelsStoreLevels', server)} must be a list of levels")
    levels = set()
    for value in raw:
        level = _LEVEL_ALIASES.get(value.lower())
        if level is None:
            raise ConfigError(
                f"{_where('LabelsStoreLevels', server)} has an unknown level {value!r} "
                f"(use {', '.join(LEVELS)})"
            )
        levels.add(level)
    return tuple(level for level in LEVELS if level in levels)


def parse_server(raw: Any, index: int) -> TenantSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f'"MultitenantDicom.Servers[{index}]" must be an object')
    if "AET" not in raw:
        raise ConfigError(f'"AET" is required in "MultitenantDicom.Servers[{index}]"')
    aet = _aet(raw["AET"], "AET", f"#{index}")
    port = _int(raw, "Port", None, 1, 65535, aet)
    if "Labels" not in raw:
        raise ConfigError(f"{_where('Labels', aet)} is required")
    labels = _str_list(raw, "Labels", aet) or []
    for label in labels:
        if not LABEL_PATTERN.match(label):
            raise ConfigError(
                f"{_where('Labels', aet)} has an invalid label {label!r}: 1 to 64 characters of A-Z a-z 0-9 _ -"
            )
    if not labels and not _bool(raw, "AllowEmptyLabels", False, aet):
        raise ConfigError(
            f"{_where('Labels', aet)} is empty, which would show this tenant the whole archive; "
            'set "AllowEmptyLabels": true on this server if that is really wanted'
        )
    constraint = raw.get("LabelsConstraint", "All")
    if constraint not in CONSTRAINTS:
        raise ConfigError(
            f"{_where('LabelsConstraint', aet)} must be one of {list(CONSTRAINTS)}, got {constraint!r}"
        )
    isolation = raw.get("StoreIsolation", "Strict")
    if isolation not in ISOLATION_POLICIES:
        raise ConfigError(
            f"{_where('StoreIsolation', aet)} must be one of {list(ISOLATION_POLICIES)}, got {isolation!r}"
        )
    per_caller = raw.get("MaxAssociationsPerCaller")
    return TenantSettings(
        aet=aet,
        port=port,
        labels=tuple(dict.fromkeys(labels)),
        constraint=constraint,
        store_levels=parse_store_levels(raw.get("LabelsStoreLevels"), aet),
        allowed_callers=parse_callers(raw.get("AllowedCallers"), aet),
        allowed_move_destinations=_tuple_or_none(_str_list(raw, "AllowedMoveDestinations", aet)),
        store_isolation=isolation,
        max_associations=_int(raw, "MaxAssociations", 64, 1, 10000, aet),
        max_associations_per_caller=None
        if per_caller is None
        else _int(raw, "MaxAssociationsPerCaller", None, 1, 10000, aet),
        tls=parse_tls(raw.get("Tls"), aet),
    )


def _tuple_or_none(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def parse_servers(raw: Mapping[str, Any], dicom: DicomSettings) -> tuple[TenantSettings, ...]:
    section = raw.get("MultitenantDicom")
    if not isinstance(section, dict) or not isinstance(section.get("Servers"), list):
        raise ConfigError('"MultitenantDicom.Servers" must be an array of tenant servers')
    servers = tuple(parse_server(entry, i) for i, entry in enumerate(section["Servers"]))
    seen_aets: dict[str, str] = {}
    seen_ports: dict[int, str] = {}
    names = {m.name for m in dicom.modalities}
    for server in servers:
        key = server.aet if dicom.strict_aet_comparison else server.aet.upper()
        if key in seen_aets:
            raise ConfigError(f'"AET" {server.aet!r} is used by two servers')
        if server.port in seen_ports:
            raise ConfigError(
                f'"Port" {server.port} of server "{server.aet}" is already used by server "{seen_ports[server.port]}"'
            )
        seen_aets[key] = server.aet
        seen_ports[server.port] = server.aet
        for name in server.allowed_move_destinations or ():
            if name not in names:
                raise ConfigError(
                    f'{_where("AllowedMoveDestinations", server.aet)} names {name!r}, which is not in "DicomModalities"'
                )
    return servers


def parse_orthanc(raw: Mapping[str, Any], env: Mapping[str, str]) -> OrthancConnection:
    section = raw.get("Orthanc", {})
    if not isinstance(section, dict):
        raise ConfigError('"Orthanc" must be an object with "Url", "Username" and "Password"')
    url = env.get("ORTHANC_URL") or section.get("Url")
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise ConfigError('"Orthanc.Url" (or ORTHANC_URL) must be an http(s) URL of Orthanc\'s REST API')
    username = env.get("ORTHANC_USERNAME", section.get("Username", ""))
    password = env.get("ORTHANC_PASSWORD", section.get("Password", ""))
    if not isinstance(username, str) or not isinstance(password, str):
        raise ConfigError('"Orthanc.Username" and "Orthanc.Password" must be strings')
    return OrthancConnection(url.rstrip("/"), username, password)


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a JSON object")
    dicom = parse_dicom(raw)
    extra = raw.get("TenantServer", {})
    if not isinstance(extra, dict):
        raise ConfigError('"TenantServer" must be an object')
    bind = extra.get("BindAddress", "0.0.0.0")
    if not isinstance(bind, str):
        raise ConfigError('"TenantServer.BindAddress" must be an address')
    return Settings(
        orthanc=parse_orthanc(raw, env),
        dicom=dicom,
        servers=parse_servers(raw, dicom),
        health_port=_int(extra, "HealthPort", 8080, 0, 65535),
        bind_address=bind,
        shutdown_grace_period=float(_int(extra, "ShutdownGracePeriod", 30, 0, 3600)),
        audit_query_values=_bool(extra, "AuditQueryValues", False),
    )


def select_servers(settings: Settings, aets: list[str] | None) -> Settings:
    """Keep only the named servers (``--server``), refusing names that are not configured."""
    if not aets:
        return settings
    by_aet = {s.aet: s for s in settings.servers}
    unknown = [a for a in aets if a not in by_aet]
    if unknown:
        raise ConfigError(f'--server {", ".join(unknown)}: no such AET in "MultitenantDicom.Servers"')
    return replace(settings, servers=tuple(by_aet[a] for a in dict.fromkeys(aets)))


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(_strip_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return parse_settings(raw, env)


def _strip_comments(text: str) -> str:
    """Orthanc accepts // and /* */ comments in its JSON; so do we (outside strings)."""
    pattern = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.S)
    return pattern.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)
