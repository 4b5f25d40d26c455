"""https on 127.0.0.1 with a self-signed certificate: trusted through SSL_CERT_FILE, else one line."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from range_server import RangeServer
from safetensors.torch import save_file

from paramscope.cli import main
from paramscope.core.errors import SourceError
from paramscope.core.sources.sources import open_source


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr("paramscope.core.files.remote_io.RETRY_PAUSE_S", 0.0)
    cert, key = _self_signed(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    root = tmp_path / "www"
    root.mkdir()
    save_file({"w": torch.arange(100_000, dtype=torch.float32)}, str(root / "m.safetensors"))
    with RangeServer(root, tls=context) as server:
        yield server, cert


def test_a_certificate_in_ssl_cert_file_is_trusted(https, monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert = https
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    url = server.url("m.safetensors")
    assert url.startswith("https://127.0.0.1:")
    opened = open_source(url)
    assert torch.equal(opened.loader("w"), torch.arange(100_000, dtype=torch.float32))


def test_an_untrusted_certificate_is_one_line_naming_the_url(https, tmp_path: Path, monkeypatch, capsys) -> None:
    server, _ = https
    other, _ = _self_signed(tmp_path, "someone-else")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    url = server.url("m.safetensors")
    with pytest.raises(SourceError, match="certificate is not trusted"):
        open_source(url)
    assert main(["inspect", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err and "SSL_CERT_FILE" in err, err
    assert server.requests == []  # no request went over the untrusted connection
