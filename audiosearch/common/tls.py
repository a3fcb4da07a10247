"""TLS on every hop that asks for it: server credentials from a service's settings, the check that admits only
named clients under mTLS (how an internal service trusts only the gateway), and client credentials for channels.

Plaintext stays the default (everything on localhost); TLS is switched on by configuring certificate files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from audiosearch.common.errors import PermissionDenied
from audiosearch.common.interception import CallInterceptor
from audiosearch.common.settings import ServiceSettings

log = logging.getLogger("audiosearch.tls")


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; with a client CA, clients must present a certificate.

    The files are read again when they change (a renewed certificate, as cert-manager writes into a mounted
    secret), and new connections get the new certificate without a restart."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    files = ServerCertificateFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    return grpc.dynamic_ssl_server_credentials(files.configuration(), files.changed_configuration,
                                               require_client_authentication=settings.tls_client_ca_file is not None)


class ServerCertificateFiles:
    """A server's certificate, key and client CA files, and the configuration they held when last read."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self._cert_file, self._key_file, self._client_ca_file = cert_file, key_file, client_ca_file
        self._read_at: tuple[int, ...] = ()

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        self._read_at = self._modified()
        client_ca = self._client_ca_file.read_bytes() if self._client_ca_file else None
        return grpc.ssl_server_certificate_configuration(
            [(self._key_file.read_bytes(), self._cert_file.read_bytes())], root_certificates=client_ca)

    def changed_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new connection's handshake: None keeps the current configuration."""
        try:
            if self._modified() == self._read_at:
                return None
            configuration = self.configuration()
        except OSError as error:  # mid-rotation (a file briefly missing): keep serving the previous certificate
            log.warning("certificate files unreadable, keeping the previous ones", extra={"error": str(error)})
            return None
        log.info("certificate files changed, reloaded", extra={"cert_file": str(self._cert_file)})
        return configuration

    def _modified(self) -> tuple[int, ...]:
        paths = (self._cert_file, self._key_file, self._client_ca_file)
        return tuple(path.stat().st_mtime_ns for path in paths if path is not None)


def security_mode(settings: ServiceSettings) -> str:
    if settings.tls_cert_file is None:
        return "plaintext"
    return "mtls" if settings.tls_client_ca_file is not None else "tls"


def identity_interceptors(settings: ServiceSettings) -> list[grpc.ServerInterceptor]:
    names = settings.allowed_client_names()
    return [ClientIdentityInterceptor(names)] if names else []


def peer_names(context: grpc.ServicerContext) -> set[str]:
    """The names in the client certificate of this call: its common name and DNS subject alternative names."""
    auth = context.auth_context()
    values = [*auth.get("x509_common_name", []), *auth.get("x509_subject_alternative_name", [])]
    return {value.decode(errors="replace") if isinstance(value, bytes) else str(value) for value in values}


class ClientIdentityInterceptor(CallInterceptor):
    """Admits only clients whose certificate names one of `allowed` (health and reflection stay open)."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self._allowed = allowed

    @contextmanager
    def around(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        names = peer_names(context)
        if not names & self._allowed:
            log.warning("client certificate refused", extra={"method": method, "peer": context.peer(),
                                                             "names": sorted(names)})
            raise PermissionDenied("this service admits only " + ", ".join(sorted(self._allowed)),
                                   reason="PERMISSION_DENIED")
        yield


@dataclass(frozen=True)
class ClientTls:
    """How a client channel speaks TLS: the CA that signed the server (None: the system roots), and for mTLS the
    client's own certificate and key; `server_name` overrides the name checked against the server certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def triton_arguments(self) -> dict[str, Any]:
        """Keyword arguments of tritonclient.grpc.InferenceServerClient for this TLS (it takes file paths)."""
        return {"ssl": True, "root_certificates": _path_or_none(self.ca_file),
                "private_key": _path_or_none(self.key_file), "certificate_chain": _path_or_none(self.cert_file)}


def _path_or_none(path: Path | None) -> str | None:
    return str(path) if path is not None else None
