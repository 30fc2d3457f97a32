"""TLS from PEM files, for both ends: server credentials (optionally mutual TLS) and client credentials.

The server (server/app.py) and the clients (client.py, cli.py) both read certificate files the same
way, so this module sits below both of them rather than inside either.

Files are read and checked when the service starts, with the standard library's `ssl` module, so a
missing file, a certificate that does not match its key, or a CA file that is not PEM stops the
service at start-up with a message naming the file, instead of failing every handshake later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc


class TLSError(Exception):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def _read(kind: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSError(f"{kind} {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TLSError(f"{kind} {path}: not a PEM file")
    return data


def check_pair(cert_file: str, key_file: str) -> tuple[bytes, bytes]:
    """The certificate chain and key, read and checked to belong together."""
    cert = _read("certificate", cert_file)
    key = _read("private key", key_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    def no_password() -> str:  # OpenSSL would otherwise ask on the terminal, and gRPC cannot decrypt it
        raise TLSError(
            f"private key {key_file} is encrypted; give gRPC an unencrypted key (readable by the service only)"
        )

    try:
        context.load_cert_chain(cert_file, key_file, password=no_password)
    except ssl.SSLError as exc:
        raise TLSError(
            f"certificate {cert_file} and key {key_file} cannot be used together: {exc.reason or exc}"
        ) from None
    return cert, key


def check_ca(ca_file: str) -> bytes:
    """The CA certificates, read and checked to parse."""
    data = _read("CA file", ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TLSError(f"CA file {ca_file}: {exc.reason or exc}") from None
    return data


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials:
    """TLS with this certificate; with a client CA, every client must present a certificate it signed."""
    cert, key = check_pair(cert_file, key_file)
    client_ca = check_ca(client_ca_file) if client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def channel_credentials(ca_file: str = "", cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """Client TLS: trust ca_file (default: the system's roots); present cert_file/key_file for mutual TLS."""
    if bool(cert_file) != bool(key_file):
        raise TLSError("a client certificate needs its key, and a key its certificate")
    ca = check_ca(ca_file) if ca_file else None
    cert, key = check_pair(cert_file, key_file) if cert_file else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
