"""Secrets the service must read back (webhook signing secrets), sealed with the key from the
environment: `LEDGER_SECRET_KEY`, one or more Fernet keys separated by commas. The first
seals; every one unseals, so the key itself can be rotated: put the new key first, re-seal (or
let secrets be replaced), then drop the old one. A sealed value is never written to the event
store; it lives in its own table beside it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Keys one LEDGER_SECRET_KEY may hold: the current one and the ones being rotated out.
SECRET_KEYS_MAX = 4


class SealError(Exception):
    """A sealed value that no configured key opens (or no key is configured)."""


def new_secret_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        keys = [part.strip() for part in secret_key.split(",") if part.strip()]
        if not 1 <= len(keys) <= SECRET_KEYS_MAX:
            raise ValueError(f"LEDGER_SECRET_KEY must hold 1 to {SECRET_KEYS_MAX} Fernet keys")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as error:
            raise ValueError(
                "LEDGER_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes each)"
            ) from error

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def unseal(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(sealed)).decode()
        except InvalidToken as error:
            raise SealError("no key of LEDGER_SECRET_KEY opens this secret") from error
