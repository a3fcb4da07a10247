"""A throwaway PKI for TLS tests, made with the openssl CLI: one CA, a server certificate for localhost, and
client certificates by name (the gateway's identity, and an intruder's signed by the same CA)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    clients: dict[str, Pair]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(folder: Path, name: str, extensions: str) -> Pair:
    key, request, cert, ext = (folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt",
                               folder / f"{name}.ext")
    ext.write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.name,
             "-out", request.name, "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", request.name, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", cert.name, "-extfile", ext.name, cwd=folder)
    return Pair(cert, key)


def make_pki(folder: Path, client_names: tuple[str, ...] = ("gateway", "intruder")) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=audiosearch test CA", cwd=folder)
    server = _signed(folder, "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                          "extendedKeyUsage=serverAuth\n")
    clients = {name: _signed(folder, name, f"subjectAltName=DNS:{name}\nextendedKeyUsage=clientAuth\n")
               for name in client_names}
    return Pki(folder / "ca.crt", server, clients)
