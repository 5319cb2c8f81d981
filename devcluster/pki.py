"""Throw-away PKI for the dev cluster.

Generates one self-signed CA and, signed by it, every certificate the
control plane needs: the API server's serving cert, an admin client cert
(group ``system:masters``, so RBAC lets it do anything), the API server's
client cert for talking to the node agent ("kubelet"), the node agent's
serving cert, plus the RSA key pair used to sign service-account tokens.
Everything is written as PEM files into one directory; nothing is reused
between runs, so there is no expiry or revocation to worry about.

Uses the ``cryptography`` package (installed in the venv as a dependency of
the storage SDKs / moto, not of the kubernetes client itself).
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = _dt.timedelta(days=7)


@dataclass(frozen=True)
class Pair:
    """Paths of a PEM certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """All PEM files of one cluster run."""

    ca: Pair
    apiserver: Pair
    admin: Pair
    apiserver_kubelet_client: Pair
    kubelet: Pair
    sa_key: Path  # RSA private key signing service-account tokens
    sa_pub: Path  # matching public key verifying them


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, pub) -> x509.CertificateBuilder:
    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


class _CA:
    def __init__(self, directory: Path):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name("sumo-k8-devcluster-ca")
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pair = Pair(directory / "ca.crt", directory / "ca.key")
        self.pair.cert.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.pair.key, self.key)

    def issue(self, stem: str, cn: str, *, org: str | None = None,
              server: bool = False, client: bool = False,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (
            _builder(_name(cn, org), self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        pair = Pair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        return pair


def generate(directory: Path, service_ip: str = "10.0.0.1") -> ClusterPKI:
    """Create a fresh CA and all leaf certificates/keys in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _CA(directory)
    apiserver = ca.issue(
        "apiserver", "kube-apiserver", server=True,
        dns=("localhost", "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
        ips=("127.0.0.1", service_ip),
    )
    admin = ca.issue("admin", "devcluster-admin", org="system:masters", client=True)
    kubelet_client = ca.issue(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
        org="system:masters", client=True,
    )
    kubelet = ca.issue("kubelet", "devcluster-node", server=True,
                       dns=("localhost",), ips=("127.0.0.1",))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _write_key(sa_key, sa)
    sa_pub.write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterPKI(ca.pair, apiserver, admin, kubelet_client, kubelet, sa_key, sa_pub)
