"""S3 server-side encryption on the wire: the SSE request headers of writes and reads,
the headers a response echoes, and Get/Put/DeleteBucketEncryption.

Every SSE header is checked before a body is taken; a customer key (SSE-C) is checked
against its MD5 and never echoed, logged or put into an error (only its MD5 is echoed,
as S3 does). SSE-C is refused over plain HTTP unless `objectstore.sse_c_allow_http`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from souverain.config import ObjectStoreSettings
from souverain.objectstore import xml as x
from souverain.objectstore.api.wire import Call, Reply, check_body_md5, parse_xml, xml_body
from souverain.objectstore.api.wire import xml_reply as _xml_reply
from souverain.objectstore.encryption import SSE_C, SSE_KMS, SSE_S3, Seal, customer_matches
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, ObjectInfo, Sealed
from souverain.objectstore.service import ObjectStoreService

SSE = "x-amz-server-side-encryption"
KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
CUSTOMER = "x-amz-server-side-encryption-customer-"
COPY_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_DEFAULT_ALIASES = ("alias/aws/s3", "aws/s3")


@dataclass(frozen=True, repr=False)
class CustomerKey:
    """An SSE-C key as a request sent it (checked against its MD5)."""

    key: bytes
    md5: str


def customer_key(call: Call, prefix: str = CUSTOMER) -> CustomerKey | None:
    """The SSE-C key the request sends under `prefix` (None: none), checked as S3 does."""
    algorithm = call.header(prefix + "algorithm")
    key_text = call.header(prefix + "key")
    md5 = call.header(prefix + "key-md5")
    if not (algorithm or key_text or md5):
        return None
    if not algorithm:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide a valid encryption algorithm.",
        )
    if algorithm != "AES256":
        raise S3Error(
            "InvalidEncryptionAlgorithmError",
            "The encryption request you specified is not valid. The valid value is AES256.",
        )
    if not key_text:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key.",
        )
    try:
        key = base64.b64decode(key_text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise S3Error("InvalidArgument", "The secret key was invalid for the specified algorithm.")
    if not md5:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key.",
        )
    actual = base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()
    if not hmac.compare_digest(actual, md5.strip()):
        raise S3Error(
            "InvalidArgument",
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        )
    return CustomerKey(key, actual)


def _over_tls(call: Call, settings: ObjectStoreSettings) -> None:
    if call.scope.get("scheme") == "https" or settings.sse_c_allow_http:
        return
    raise S3Error(
        "InvalidRequest",
        "Requests specifying Server Side Encryption with Customer provided keys must be made "
        "over a secure connection.",
    )


def kms_key_id(value: str) -> str | None:
    """A key-manager secret named by its id, its href or an ARN (None: the project's own
    key, AWS's aws/s3 default)."""
    value = value.strip()
    if not value or value in _DEFAULT_ALIASES or value.endswith(":alias/aws/s3"):
        return None
    for marker in ("/secrets/", ":key/"):
        if marker in value:
            value = value.rsplit(marker, 1)[1].strip("/")
            break
    if not _KEY_ID.match(value):
        raise S3Error("KMS.NotFoundException", "Invalid keyId", status=400)
    return value


def write_seal(
    call: Call,
    bucket: BucketInfo,
    service: ObjectStoreService,
    settings: ObjectStoreSettings,
) -> Seal | None:
    """The data key a write seals with: as its SSE headers ask, else the bucket default."""
    mode = call.header(SSE)
    kms = call.header(KMS_KEY)
    given = customer_key(call)
    if mode and mode not in (SSE_S3, SSE_KMS):
        raise S3Error(
            "InvalidArgument", "The encryption method specified is not supported", call.resource
        )
    if given is not None and mode:
        raise S3Error(
            "InvalidArgument",
            "Server Side Encryption with Customer provided key is incompatible with the "
            "encryption method specified",
            call.resource,
        )
    if kms and mode != SSE_KMS:
        raise S3Error(
            "InvalidArgument",
            "Specifying an AWS KMS key id requires x-amz-server-side-encryption: aws:kms.",
            call.resource,
        )
    if given is not None:
        _over_tls(call, settings)
        return service.sealer.new(bucket.project_id, SSE_C, None, given.key, given.md5)
    if mode == SSE_S3:
        return service.sealer.new(bucket.project_id, SSE_S3)
    if mode == SSE_KMS:
        return service.sealer.new(bucket.project_id, SSE_KMS, kms_key_id(kms), bucket=bucket)
    return service.sealer.default(bucket)


def may_seal(call: Call, bucket: BucketInfo, service: ObjectStoreService) -> bool:
    """Whether a write may be encrypted (else `write_seal` is None without asking keys)."""
    return service.sealer.has_default(bucket) or any(name.startswith(SSE) for name in call.headers)


async def seal_for_write(
    call: Call, bucket: BucketInfo, service: ObjectStoreService, settings: ObjectStoreSettings
) -> Seal | None:
    """`write_seal`, in a thread when it may ask the key manager (an HSM may be slow)."""
    if not may_seal(call, bucket, service):
        return None
    return await asyncio.to_thread(write_seal, call, bucket, service, settings)


def read_key(
    call: Call, obj: ObjectInfo, settings: ObjectStoreSettings, prefix: str = CUSTOMER
) -> CustomerKey | None:
    """The SSE-C key a read of `obj` must send (checked), or None for other versions."""
    given = customer_key(call, prefix)
    sealed = obj.sse
    if sealed is None or sealed.mode != SSE_C:
        if given is not None:
            raise S3Error(
                "InvalidRequest",
                "The encryption parameters are not applicable to this object.",
                call.resource,
            )
        return None
    if given is None:
        raise S3Error(
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. The correct "
            "parameters must be provided to retrieve the object.",
            call.resource,
        )
    _over_tls(call, settings)
    if sealed.customer is None or not customer_matches(given.key, sealed.customer):
        raise S3Error("AccessDenied", "Access Denied", call.resource)
    return given


def default_key_arn(region: str, project_id: str) -> str:
    """How responses name the project's own key (SSE-KMS without a key id of its own, as a
    bucket default or a request): as AWS names its aws/s3 managed key, an ARN a client may
    send back as a key id (`kms_key_id` reads it as that same key)."""
    return f"arn:aws:kms:{region}:{project_id}:alias/aws/s3"


def sse_headers(
    sealed: Sealed | Seal | None, region: str, customer: CustomerKey | None = None
) -> dict[str, str]:
    """What a response says of a version's encryption; SSE-KMS always names its key."""
    if sealed is None:
        return {}
    if sealed.mode == SSE_C:
        md5 = customer.md5 if customer is not None else getattr(sealed, "customer_md5", None)
        headers = {CUSTOMER + "algorithm": "AES256"}
        if md5:
            headers[CUSTOMER + "key-md5"] = md5
        return headers
    headers = {SSE: sealed.mode}
    if sealed.mode == SSE_KMS:
        headers[KMS_KEY] = sealed.key_id or default_key_arn(region, sealed.project)
    return headers


def etag_of(seal: Seal | None, md5_hex: str) -> str:
    """A single PUT's ETag: the plaintext MD5, but opaque for SSE-KMS and SSE-C (as S3)."""
    if seal is not None and seal.mode in (SSE_KMS, SSE_C):
        return seal.opaque_etag(md5_hex)
    return md5_hex


def asks_encryption(call: Call) -> bool:
    """Whether a request names an encryption of its own (a copy onto itself may)."""
    return bool(call.header(SSE) or call.header(CUSTOMER + "algorithm"))


class EncryptionHandlers:
    """GET, PUT and DELETE ?encryption: the bucket's default encryption, the owning
    project's writers' to change (its readers read it), others' as a bucket policy grants
    `s3:GetEncryptionConfiguration` / `s3:PutEncryptionConfiguration`."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings

    def get_encryption(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:GetEncryptionConfiguration")
        config = self.service.sealer.default_config(bucket)
        if config is None:
            raise S3Error(
                "ServerSideEncryptionConfigurationNotFoundError",
                "The server side encryption configuration was not found",
                call.resource,
            )
        default: dict[str, object] = {"SSEAlgorithm": config["SSEAlgorithm"]}
        if config.get("KMSMasterKeyID"):
            default["KMSMasterKeyID"] = config["KMSMasterKeyID"]
        rule: dict[str, object] = {"ApplyServerSideEncryptionByDefault": default}
        rule["BucketKeyEnabled"] = bool(config.get("BucketKeyEnabled", False))
        return _xml_reply(x.document("ServerSideEncryptionConfiguration", {"Rule": rule}))

    async def put_encryption(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutEncryptionConfiguration")
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        element = parse_xml(body, "ServerSideEncryptionConfiguration")
        rules = element.findall("Rule")
        if len(rules) != 1 or rules[0].find("ApplyServerSideEncryptionByDefault") is None:
            raise S3Error("MalformedXML", "One Rule with ApplyServerSideEncryptionByDefault.")
        default = rules[0].find("ApplyServerSideEncryptionByDefault")
        algorithm = x.text(default, "SSEAlgorithm").strip()
        key = x.text(default, "KMSMasterKeyID").strip()
        enabled = x.text(rules[0], "BucketKeyEnabled", "false").strip().lower()
        if algorithm not in (SSE_S3, SSE_KMS) or enabled not in ("true", "false"):
            raise S3Error("MalformedXML", "SSEAlgorithm is AES256 or aws:kms.")
        config: dict[str, object] = {"SSEAlgorithm": algorithm}
        if key:
            if algorithm != SSE_KMS:
                raise S3Error("InvalidArgument", "a KMSMasterKeyID is only allowed with aws:kms.")
            key_id = kms_key_id(key)
            if key_id is not None:
                # the key must be the bucket owner's and usable: tried now, not at each PUT
                # and the bucket becomes the key's consumer from now on
                self.service.sealer.new(bucket.project_id, SSE_KMS, key_id, bucket=bucket)
                config["KMSMasterKeyID"] = key_id
        if enabled == "true":
            config["BucketKeyEnabled"] = True
        self.service.set_encryption(bucket, config)
        return Reply(200)

    def delete_encryption(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutEncryptionConfiguration")
        # with `encryption.mandatory` the bucket still answers (and encrypts as) SSE-S3
        self.service.set_encryption(bucket, None)
        return Reply(204)
