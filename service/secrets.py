"""Local secrets: the JWT signing secret and the settings encryption key.

Generated once into the data directory (mode 0600) when the environment does not set them,
so a laptop install needs no set-up and every process on the same data directory agrees.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import Settings

__all__ = ["SettingsCipher", "encryption_key", "jwt_secret"]


def _file_secret(data_dir: Path, name: str, make: bytes) -> bytes:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(make)
    return make


def jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    made = secrets.token_urlsafe(48).encode()
    return _file_secret(settings.data_dir, "jwt-secret", made).decode()


def encryption_key(settings: Settings) -> bytes:
    raw = settings.encryption_key
    if not raw:
        made = base64.b64encode(AESGCM.generate_key(bit_length=256))
        raw = _file_secret(settings.data_dir, "encryption-key", made).decode()
    key = base64.b64decode(raw)
    if len(key) != 32:
        raise ValueError("RECON_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
    return key


class SettingsCipher:
    """AES-GCM for connection settings; the tenant and connection id are authenticated data,
    so a ciphertext copied onto another row does not decrypt."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], context)
