"""Ed25519 keys of departments and of the exchange.

A department signs its publication packages; the exchange registers each department's
public key and refuses a package its registered key does not verify. A key is named by
a short id (the first 8 bytes of a SHA-256 over the holder's name and the public key), so
a signature says which key made it and a rotated key cannot be mistaken for the old one.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.errors import ExchangeError
from exchange.home import write_secret


class KeyFileError(ExchangeError):
    """A key file is missing or is not an Ed25519 key."""


def key_id(holder: str, public: bytes) -> str:
    return hashlib.sha256(holder.encode() + b"\n" + public).digest()[:8].hex()


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key, written as PKCS#8 PEM to a new file readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(path, pem)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as problem:
        raise KeyFileError(f"cannot read key {path}: {problem.strerror}") from None
    except ValueError as problem:
        raise KeyFileError(f"{path} is not a PEM private key: {problem}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> bytes:
    """A raw 32-byte public key from a PEM public or private key file, or base64 text."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        return raw_public(load_private_key(path))
    if b"PUBLIC KEY" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path} is not an Ed25519 public key")
        return raw_public(key)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyFileError(f"{path} holds neither a PEM key nor a base64 Ed25519 public key")
    return raw


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verifies(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
