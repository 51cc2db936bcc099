"""The broker's TLS material: a certificate authority the center creates on first start (or one the operator
supplies) and the server certificate it signs; client certificates for devices that authenticate with one.

Made with the `cryptography` package rather than the openssl command: the same code runs on a developer's
machine and in the slim container image (which has no openssl command), and nothing is parsed from a tool's output.
Private keys are written with mode 0600 and never logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)
CLIENT_VALIDITY = timedelta(days=825)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a broker's TLS files are: the CA certificate devices trust, the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    # None when the operator supplied the CA (its key stays with them): no client certificates are issued here.
    ca_key: Path | None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path}: expected an EC private key")
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ioc"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def create_ca(folder: Path, *, common_name: str = "ioc broker CA") -> tuple[Path, Path]:
    """A new self-signed CA in `folder` (ca.crt, ca.key with mode 0600); returns their paths."""
    key = _new_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    _write_private(key_path, _key_pem(key))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _issue(
    *,
    ca_cert: Path,
    ca_key: Path,
    common_name: str,
    usage: x509.ObjectIdentifier,
    validity: timedelta,
    hosts: Sequence[str] = (),
) -> tuple[bytes, bytes]:
    """A certificate for `common_name` signed by the CA, and its new key, both as PEM."""
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = _load_key(ca_key)
    key = _new_key()
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ensure_broker_tls(folder: Path, *, hosts: Sequence[str], ca_cert: Path | None = None) -> TlsFiles:
    """The broker's TLS files in `folder`, made on first use: the center's own CA (or the operator's `ca_cert`,
    whose key must lie beside it as `ca.key` only if this center should sign with it) and a server certificate
    for `hosts`. A server certificate is re-issued when the hosts change."""
    folder.mkdir(parents=True, exist_ok=True)
    if ca_cert is None:
        ca_cert, ca_key = folder / "ca.crt", folder / "ca.key"
        if not (ca_cert.exists() and ca_key.exists()):
            ca_cert, ca_key = create_ca(folder)
    else:
        ca_key = ca_cert.with_name("ca.key")
    server_cert, server_key = folder / "server.crt", folder / "server.key"
    hosts_file = folder / "server.hosts"
    wanted = "\n".join(sorted(set(hosts)))
    current = hosts_file.read_text(encoding="utf-8") if hosts_file.exists() else None
    if not (server_cert.exists() and server_key.exists()) or current != wanted:
        if not ca_key.exists():
            raise FileNotFoundError(
                f"{server_cert} is missing and no CA key to sign one: put the server certificate and key there"
            )
        cert_pem, key_pem = _issue(
            ca_cert=ca_cert,
            ca_key=ca_key,
            common_name=hosts[0] if hosts else "localhost",
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            validity=SERVER_VALIDITY,
            hosts=hosts,
        )
        _write_private(server_key, key_pem)
        server_cert.write_bytes(cert_pem)
        hosts_file.write_text(wanted, encoding="utf-8")
    return TlsFiles(
        ca_cert=ca_cert, server_cert=server_cert, server_key=server_key, ca_key=ca_key if ca_key.exists() else None
    )


def issue_client_certificate(files: TlsFiles, *, device_id: str, folder: Path) -> tuple[Path, Path]:
    """A client certificate for `device_id` (its common name) signed by the center's CA: (cert, key) in `folder`."""
    if files.ca_key is None:
        raise FileNotFoundError("the CA's key is not held by this center: issue client certificates with your CA")
    cert_pem, key_pem = _issue(
        ca_cert=files.ca_cert,
        ca_key=files.ca_key,
        common_name=device_id,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        validity=CLIENT_VALIDITY,
    )
    cert_path, key_path = folder / f"{device_id}.crt", folder / f"{device_id}.key"
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path
