"""TLS for the listeners: the server's SSL context, and the self-signed certificate made at start.

`server.tls_cert_file`/`tls_key_file` name the operator's certificate; with
`server.tls_self_signed` the set-up makes a private CA and a server certificate it signs
for the public names, under `<data_dir>/tls/` (keys 0600). The CA's key is not kept: a
new name means a new CA, written to the same `ca.pem` clients already trust by path.
This module must not log or return key material, and must not weaken the context below
(TLS 1.2+, ECDHE with AEAD ciphers only) for any client's sake.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from souverain.config import Settings

# TLS 1.2 suites: forward-secret key exchange and AEAD only (no CBC, no RSA key
# exchange, no SHA-1 MAC). TLS 1.3's own suites are all AEAD and stay on.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
CERT_DAYS = 397  # what browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)
WILDCARD_BINDS = ("", "0.0.0.0", "::")  # noqa: S104 - names, not a bind


@dataclass(frozen=True)
class TlsFiles:
    """What the listeners load and what clients trust."""

    cert: Path
    key: Path
    ca: Path | None  # what clients are told to trust (clouds.yaml cacert, AWS ca_bundle)


def tls_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "tls"


def tls_files(settings: Settings) -> TlsFiles | None:
    """The files the listeners serve, or None without TLS."""
    server = settings.server
    if server.tls_cert_file is not None and server.tls_key_file is not None:
        return TlsFiles(server.tls_cert_file, server.tls_key_file, server.tls_ca_file)
    if server.tls_self_signed:
        folder = tls_dir(settings)
        return TlsFiles(folder / "server.pem", folder / "server.key", folder / "ca.pem")
    return None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The listeners' context: TLS 1.2 and 1.3, strong AEAD suites, no compression."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


def client_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """What a client of ours (an agent) verifies the control plane with; None: the system's."""
    if ca_file is None:
        return None
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def public_names(settings: Settings) -> list[str]:
    """Host names and addresses the certificate must name for clients to verify it."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if settings.server.host not in WILDCARD_BINDS:
        names.append(settings.server.host)
    for url in (settings.server.public_url, settings.server.s3_public_url):
        if url and urlsplit(url).hostname:
            names.append(str(urlsplit(url).hostname))
    domain = settings.objectstore.domain
    if domain:  # virtual-hosted S3: bucket.<domain>
        names += [domain, f"*.{domain}"]
    names += settings.server.tls_names
    return list(dict.fromkeys(n.lower() for n in names if n))


def ensure_self_signed(settings: Settings, now: dt.datetime | None = None) -> TlsFiles | None:
    """Make (or remake) the self-signed certificate when asked for and missing, expiring
    or not naming every public name; the files either way (None without self-signing)."""
    files = tls_files(settings)
    if files is None or not settings.server.tls_self_signed:
        return files
    now = now or dt.datetime.now(dt.UTC)
    names = public_names(settings)
    if not _still_good(files, names, now):
        _issue(files, names, now)
    return files


def _still_good(files: TlsFiles, names: list[str], now: dt.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        files.key.stat()
        if files.ca is not None:
            files.ca.stat()
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    held = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    held |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return all(_canonical(n) in held for n in names)


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def _issue(files: TlsFiles, names: list[str], now: dt.datetime) -> None:
    """A fresh CA (its key forgotten once it has signed) and a server certificate it signs."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Souverain local CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_alt_names(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files.cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(files.key, key_pem, 0o600)
    # the chain: a client that trusts ca.pem verifies the leaf whatever it was given
    _write(files.cert, leaf.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    if files.ca is not None:
        _write(files.ca, ca.public_bytes(pem), 0o644)


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write aside, sync, rename: a reader sees the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
