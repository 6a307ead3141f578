"""The node's identity: its key (32 secret bytes, hex, in the config) is an ed25519 private
key; the public key goes in every check-in and the node id is derived from it, so a
check-in names a node only if it is signed by that node's key."""
from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def public_key(secret: str) -> str:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret)).public_key().public_bytes_raw().hex()


def node_id(public: str) -> str:
    return hashlib.sha256(f"d4c-node-id:{public}".encode()).hexdigest()[:32]


def sign(secret: str, data: bytes) -> str:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret)).sign(data).hex()


def verify(public: str, data: bytes, signature: str) -> bool:
    """False for a bad signature, or a key or signature that is not well-formed hex."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
