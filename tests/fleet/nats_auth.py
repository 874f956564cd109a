"""What a NATS operator hands a site, made here: a TLS CA with server and
client certificates, and decentralised auth (operator, account and user
nkeys and JWTs, a ``.creds`` file and the server's config with a memory
resolver), so the site's ``--fleet-tls-*`` and ``--fleet-creds`` options
are tested against a real nats-server."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self) -> tuple[str, ...]:
        """nats-server options: TLS on the client port, client certificates required."""
        return ("--tls", "--tlscert", str(self.server_cert), "--tlskey", str(self.server_key),
                "--tlscacert", str(self.ca), "--tlsverify")


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
                 usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test NATS CA")])
    ca = _certificate("test NATS CA", ca_key, ca_name, ca_key, ca=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                     folder / "client.pem", folder / "client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, name, usage in (
            (files.server_cert, files.server_key, "nats server", ExtendedKeyUsageOID.SERVER_AUTH),
            (files.client_cert, files.client_key, "site hq", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca_name, ca_key, usage=usage)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
    return files


# --- decentralised auth: operator -> account -> user ---------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _keypair(prefix: int) -> Any:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _jwt(issuer: Any, subject: str, name: str, nats_claims: dict[str, Any]) -> str:
    claims = {"jti": secrets.token_hex(16).upper(), "iat": int(time.time()),
              "iss": issuer.public_key.decode(), "name": name, "sub": subject,
              "nats": {**nats_claims, "version": 2}}
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(issuer.sign(f'{head}.{body}'.encode()))}"


@dataclass(frozen=True)
class Decentralised:
    config: Path
    creds: Path

    def server_args(self) -> tuple[str, ...]:
        return ("-c", str(self.config))


def make_decentralised(folder: Path) -> Decentralised:
    """An operator, one account with JetStream (and the system account), one
    user and its ``.creds``."""
    folder.mkdir(parents=True, exist_ok=True)
    operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _keypair(nkeys.PREFIX_BYTE_USER)
    operator_jwt = _jwt(operator, operator.public_key.decode(), "test-operator",
                        {"type": "operator"})
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1, "mem_storage": -1,
                 "disk_storage": -1, "streams": -1, "consumer": -1}
    account_jwt = _jwt(operator, account.public_key.decode(), "sites",
                       {"type": "account", "limits": unlimited})
    # JetStream needs the server's own system account.
    system = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system_jwt = _jwt(operator, system.public_key.decode(), "SYS", {"type": "account"})
    user_jwt = _jwt(account, user.public_key.decode(), "site-hq",
                    {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                     "payload": -1})
    creds = folder / "site-hq.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n")
    config = folder / "nats.conf"
    config.write_text(
        f"operator: {operator_jwt}\n"
        f"system_account: {system.public_key.decode()}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n  {account.public_key.decode()}: {account_jwt}\n"
        f"  {system.public_key.decode()}: {system_jwt}\n}}\n")
    return Decentralised(config, creds)
