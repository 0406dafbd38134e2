"""Server-side encryption of objects: which data key seals a version, and how it is kept.

Three modes, as S3 names them: SSE-S3 (`AES256`: a data key wrapped under the bucket
owner's project key), SSE-KMS (`aws:kms`: wrapped under a key-manager secret the bucket
owner's project owns) and SSE-C (a key the customer sends with every request: it wraps
the data key and is never stored; only a salted HMAC recognises it). Every version has a
data key of its own; only its wrapped form is kept in the row (`sse_wrapped`).

A bucket that seals with a customer's key-manager secret (SSE-KMS naming a key, by default
or on a write) is registered as that secret's consumer (service `object-store`, type
`bucket`, the bucket's name) until the bucket is deleted: the key manager then refuses a
plain delete of a key the bucket's objects still open with (Barbican's consumers), where
losing it would make them unreadable.

Knows nothing of HTTP. Keys stay in memory: no key, wrapped or not, goes into an error,
a log line or a `repr`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from souverain.common.keys import KeyConsumer, KeyNotFound, KeyUnavailable, ProjectKeys
from souverain.objectstore import cipher
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, NewObject, Sealed
from souverain.objectstore.store import BlobStore, BlobWriter

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
SSE_C = "SSE-C"
_C_WRAP_AAD = b"souverain sse-c data key"
# How long a server process counts on having registered a bucket as a key's consumer: the
# next write after it registers again (renewing the consumer, or bringing back one its
# owner removed). Registering is one small write to the key manager's tables.
CONSUMER_RENEW = 300.0
_REMEMBERED = 10_000  # (bucket, key) pairs a process remembers; past it, it starts over


def bucket_consumer(bucket: BucketInfo) -> KeyConsumer:
    """The bucket as the key manager shows it among a secret's consumers."""
    return KeyConsumer("object-store", "bucket", bucket.name)


@dataclass(frozen=True, repr=False)
class Seal:
    """How one version (or upload) is encrypted, with its data key in memory."""

    mode: str
    key: bytes
    wrapped: bytes
    key_id: str | None = None
    customer: str | None = None  # SSE-C: "salt:hmac" recognising the customer key
    customer_md5: str | None = field(default=None)  # the request's key MD5, to echo
    project: str = ""  # the bucket owner's project, whose keys sealed it

    def columns(self) -> dict[str, Any]:
        """What the version's row keeps (never `key`)."""
        return {
            "sse_mode": self.mode,
            "sse_key_id": self.key_id,
            "sse_wrapped": self.wrapped,
            "sse_customer": self.customer,
        }

    def opaque_etag(self, md5_hex: str) -> str:
        """SSE-KMS and SSE-C ETags are not the plaintext's MD5 (as on S3): stable for the
        version, derived under its data key so it reveals nothing of the bytes."""
        return hmac.new(self.key, bytes.fromhex(md5_hex), hashlib.sha256).hexdigest()[:32]


def customer_hmac(customer_key: bytes, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    mac = hmac.new(salt, customer_key, hashlib.sha256).digest()
    return f"{base64.b64encode(salt).decode()}:{base64.b64encode(mac).decode()}"


def customer_matches(customer_key: bytes, recorded: str) -> bool:
    salt_text, _, _mac = recorded.partition(":")
    try:
        salt = base64.b64decode(salt_text, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(customer_hmac(customer_key, salt), recorded)


def _kms_missing(key_id: str) -> S3Error:
    # AWS answers a key that does not exist or is not the caller's with KMS's own error.
    return S3Error(
        "KMS.NotFoundException",
        f"Invalid keyId {key_id}",
        status=400,
    )


def _keys_away() -> S3Error:
    # the root of trust (HSM, master key file) cannot answer now: nothing stored, retry
    return S3Error(
        "ServiceUnavailable",
        "The key manager cannot answer right now; nothing was stored. Please retry.",
        headers={"Retry-After": "5"},
        status=503,
    )


class Sealer:
    """Makes and opens the data keys of encrypted versions for the object store.
    `mandatory`: every bucket without a default of its own encrypts as SSE-S3."""

    def __init__(self, keys: ProjectKeys | None, mandatory: bool = False) -> None:
        self.keys = keys
        self.mandatory = mandatory
        # (bucket id, secret id) -> when this process registered the bucket as a consumer
        self._registered: dict[tuple[str, str], float] = {}
        self._registered_lock = threading.Lock()

    def default_config(self, bucket: BucketInfo) -> dict[str, Any] | None:
        """The bucket's default encryption as GetBucketEncryption shows it (None: none)."""
        if bucket.encryption is not None:
            return bucket.encryption
        return {"SSEAlgorithm": SSE_S3} if self.mandatory else None

    def has_default(self, bucket: BucketInfo) -> bool:
        return bucket.encryption is not None or self.mandatory

    def default(self, bucket: BucketInfo) -> Seal | None:
        """A data key for a new version written without encryption headers (None: plain)."""
        config = self.default_config(bucket)
        if config is None:
            return None
        mode = config["SSEAlgorithm"]
        key_id = config.get("KMSMasterKeyID") or None if mode == SSE_KMS else None
        return self.new(bucket.project_id, mode, key_id, bucket=bucket)

    def reopen(self, sealed: Sealed, customer_key: bytes | None = None) -> Seal:
        """The Seal of a stored upload or version, its data key opened (multipart parts)."""
        key = self.open(sealed.project, sealed.mode, sealed.wrapped, sealed.customer, customer_key)
        return Seal(
            sealed.mode, key, sealed.wrapped, sealed.key_id, sealed.customer, project=sealed.project
        )

    def _project_keys(self) -> ProjectKeys:
        if self.keys is None:
            raise S3Error(
                "ServiceUnavailable",
                "Server-side encryption needs the key manager, which this server does not run.",
                status=503,
            )
        return self.keys

    def new(
        self,
        project_id: str,
        mode: str,
        key_id: str | None = None,
        customer_key: bytes | None = None,
        customer_md5: str | None = None,
        bucket: BucketInfo | None = None,
    ) -> Seal:
        """A fresh data key for a new version of the bucket owner's `project_id`; with
        `key_id` (SSE-KMS naming a secret), `bucket` becomes the secret's consumer."""
        if mode == SSE_C:
            if customer_key is None:
                raise ValueError("SSE-C needs the customer's key")
            data_key = os.urandom(32)
            nonce = os.urandom(12)
            wrapped = nonce + AESGCM(customer_key).encrypt(nonce, data_key, _C_WRAP_AAD)
            customer = customer_hmac(customer_key)
            return Seal(SSE_C, data_key, wrapped, None, customer, customer_md5, project_id)
        try:
            made = self._project_keys().new_data_key(project_id, key_id)
        except KeyNotFound:
            raise _kms_missing(key_id or "") from None
        except KeyUnavailable:
            raise _keys_away() from None
        if key_id is not None and bucket is not None:
            self._consumes(bucket, key_id)
        return Seal(mode, made.plaintext, made.wrapped, key_id, project=project_id)

    def _consumes(self, bucket: BucketInfo, key_id: str) -> None:
        """Register the bucket as the consumer of its owner's secret `key_id` (once every
        `CONSUMER_RENEW` seconds per process: most writes ask nothing more)."""
        pair, now = (bucket.id, key_id), time.monotonic()
        with self._registered_lock:
            at = self._registered.get(pair)
            if at is not None and now - at < CONSUMER_RENEW:
                return
        self._project_keys().add_consumer(bucket.project_id, key_id, bucket_consumer(bucket))
        with self._registered_lock:
            if len(self._registered) >= _REMEMBERED:
                self._registered.clear()
            self._registered[pair] = now

    def release(self, bucket: BucketInfo) -> None:
        """The bucket is deleted: it consumes none of its owner's secrets any more."""
        with self._registered_lock:
            for pair in [pair for pair in self._registered if pair[0] == bucket.id]:
                del self._registered[pair]
        if self.keys is not None:
            self.keys.remove_consumer_everywhere(bucket.project_id, bucket_consumer(bucket))

    def open(
        self,
        project_id: str,
        mode: str,
        wrapped: bytes,
        customer: str | None = None,
        customer_key: bytes | None = None,
    ) -> bytes:
        """The data key of a stored version. SSE-C: `customer_key` must be the one that
        sealed it (the caller checked it against `customer` first)."""
        if mode == SSE_C:
            if customer_key is None or customer is None:
                raise S3Error(
                    "InvalidRequest",
                    "The object was stored using a form of Server Side Encryption. The correct "
                    "parameters must be provided to retrieve the object.",
                )
            try:
                return AESGCM(customer_key).decrypt(wrapped[:12], wrapped[12:], _C_WRAP_AAD)
            except InvalidTag:
                raise S3Error("AccessDenied", "Access Denied") from None
        try:
            return self._project_keys().open_data_key(project_id, wrapped)
        except KeyUnavailable:
            raise _keys_away() from None
        except KeyNotFound:
            raise S3Error(
                "KMS.NotFoundException",
                "The key that encrypted this object is no longer available.",
                status=400,
            ) from None


def blob_writer(
    store: BlobStore, seal: Seal | None, algorithms: Iterable[str] = (), part: int = 0
) -> BlobWriter:
    """Where a new version's (or part's) bytes go: sealed when `seal` is given."""
    if seal is None:
        return store.writer(algorithms)
    return cipher.SealingWriter(store.writer(()), seal.key, part, algorithms)


def apply_seal(new: NewObject, seal: Seal | None) -> None:
    """Record `seal` on a new version; its inline bytes (plaintext so far) are sealed."""
    if seal is None:
        return
    new.sse = seal.columns()
    if new.data is not None:
        new.data = cipher.seal(seal.key, new.data)
