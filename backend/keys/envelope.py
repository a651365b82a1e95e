"""Encrypting raw payloads with a member's data key (AES-256-GCM).

The record id and member id are authenticated data, so a ciphertext cannot be moved
to another record or member without failing to decrypt."""

from __future__ import annotations

import secrets
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.keys.kms import KeyUnavailable

_NONCE = 12


def _aad(record_id: uuid.UUID, member_id: uuid.UUID) -> bytes:
    return record_id.bytes + member_id.bytes


def seal(key: bytes, plaintext: bytes, record_id: uuid.UUID, member_id: uuid.UUID) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(record_id, member_id))


def open_sealed(key: bytes, sealed: bytes, record_id: uuid.UUID, member_id: uuid.UUID) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(record_id, member_id))
    except InvalidTag:
        raise KeyUnavailable(f"raw record {record_id} does not decrypt") from None
