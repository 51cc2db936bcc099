"""The center's certificate authority (embedded.tls): made once, keys private, a server certificate for the
broker's names that verifies against it, and client certificates for devices."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from embedded.tls import ensure_broker_tls, issue_client_certificate


def test_the_center_creates_its_ca_once_and_signs_a_server_certificate_for_its_names(tmp_path: Path) -> None:
    files = ensure_broker_tls(tmp_path, hosts=["127.0.0.1", "broker.example"])
    again = ensure_broker_tls(tmp_path, hosts=["127.0.0.1", "broker.example"])
    assert again.ca_cert.read_bytes() == files.ca_cert.read_bytes()
    assert again.server_cert.read_bytes() == files.server_cert.read_bytes()  # nothing re-issued
    assert files.ca_key is not None
    for key in (files.ca_key, files.server_key):
        assert key.stat().st_mode & 0o777 == 0o600
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["broker.example"]
    # A TLS client that trusts only the center's CA accepts the server's chain.
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    context.load_cert_chain(files.server_cert, files.server_key)  # the pair matches
    before = files.server_cert.read_bytes()
    renamed = ensure_broker_tls(tmp_path, hosts=["127.0.0.1", "mqtt.example"])
    assert renamed.server_cert.read_bytes() != before  # new names: a new server certificate, same CA


def test_a_client_certificate_names_the_device_and_is_for_client_auth(tmp_path: Path) -> None:
    files = ensure_broker_tls(tmp_path / "tls", hosts=["localhost"])
    cert_path, key_path = issue_client_certificate(files, device_id="soil-1", folder=tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "soil-1"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert key_path.stat().st_mode & 0o777 == 0o600
