"""Object storage rules: one facade over buckets, objects, listings and multipart uploads.

Knows nothing of HTTP or XML. Each resource family is its own class (`buckets`,
`objects`, `listings`, `uploads`), sharing the books (`accounting`) and the
quotas; this facade builds them, binds their operations under the names the API
and the server call, and keeps what spans them (access checks, start-up sweep).
"""

from __future__ import annotations

from sqlalchemy import select

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.common.keys import ProjectKeys
from souverain.common.metering import Meter
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.objectstore import acl as acl_rules
from souverain.objectstore import models as m
from souverain.objectstore import usage as ledger
from souverain.objectstore.accounting import Accounting
from souverain.objectstore.batch import GroupCommit
from souverain.objectstore.buckets import BUCKET_CACHE_SECONDS, Buckets
from souverain.objectstore.encryption import Sealer
from souverain.objectstore.errors import ERROR_STATUS, S3Error
from souverain.objectstore.expiration import LifecycleSweep, Swept
from souverain.objectstore.listings import Listings
from souverain.objectstore.metering import PendingMeter
from souverain.objectstore.objects import VERSIONS, Objects
from souverain.objectstore.policy import (
    Principal,
    allowed,
    may_bypass_governance,
)
from souverain.objectstore.quotas import Quotas, set_storage_quota
from souverain.objectstore.records import (
    MAX_BUCKET_TAGS,
    MAX_KEY_BYTES,
    MAX_TAGS,
    NULL_VERSION,
    BucketInfo,
    DeleteResult,
    Listing,
    NewObject,
    ObjectInfo,
    PartInfo,
    Released,
    UploadInfo,
    check_bucket_name,
    check_key,
    check_tags,
)
from souverain.objectstore.store import BlobStore
from souverain.objectstore.uploads import Uploads

# Where these names lived before the service was split by resource.
__all__ = [
    "BUCKET_CACHE_SECONDS",
    "ERROR_STATUS",
    "MAX_BUCKET_TAGS",
    "MAX_KEY_BYTES",
    "MAX_TAGS",
    "NULL_VERSION",
    "VERSIONS",
    "BucketInfo",
    "DeleteResult",
    "Listing",
    "NewObject",
    "ObjectInfo",
    "ObjectStoreService",
    "PartInfo",
    "Released",
    "S3Error",
    "UploadInfo",
    "check_bucket_name",
    "check_key",
    "check_tags",
    "set_storage_quota",
]


class ObjectStoreService:
    """Object storage as the S3 API, the server and the operator's CLI see it."""

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        identity: IdentityService,
        region: str,
        clock: Clock | None = None,
        min_part_bytes: int = 5 * 1024 * 1024,
        changes: ChangeCounter | None = None,
        quota_bytes: int = -1,
        quota_objects: int = -1,
        abort_incomplete_after: float = 7 * 24 * 3600,
        project_keys: ProjectKeys | None = None,
        encryption_mandatory: bool = False,
    ) -> None:
        self.db = db
        self.store = store
        self.identity = identity
        self.region = region
        self.clock = clock or Clock()
        self.min_part_bytes = min_part_bytes
        self.abort_incomplete_after = abort_incomplete_after  # seconds; 0: never
        self.changes = changes
        self.pending = PendingMeter()
        self.writes = GroupCommit(db.engine)
        self.accounting = Accounting(db, self.clock, self.pending)
        self.quotas = Quotas(self.clock, quota_bytes, quota_objects)
        # Server-side encryption: data keys from the key manager (None: SSE-S3 and SSE-KMS
        # answer 503); `encryption_mandatory`: every bucket encrypts by default (SSE-S3).
        self.sealer = Sealer(project_keys, encryption_mandatory)
        self.buckets = Buckets(db, store, self.accounting, region, self.clock, changes, self.sealer)
        self.encryption_mandatory = encryption_mandatory
        self.objects = Objects(
            db, store, self.accounting, self.quotas, self.writes, self.clock, self.sealer
        )
        self.listings = Listings(db)
        self.uploads = Uploads(db, store, self.accounting, self.quotas, self.clock, min_part_bytes)
        self.lifecycle = LifecycleSweep(db, self.objects, self.uploads, self.clock)
        # The operations, bound once from the class that owns each: a request calls
        # its owner directly, never through an extra call in this facade.
        self.bucket = self.buckets.bucket
        self.list_buckets = self.buckets.list_buckets
        self.create_bucket = self.buckets.create_bucket
        self.delete_bucket = self.buckets.delete_bucket
        self.set_versioning = self.buckets.set_versioning
        self.set_bucket_acl = self.buckets.set_bucket_acl
        self.set_policy = self.buckets.set_policy
        self.set_cors = self.buckets.set_cors
        self.set_bucket_tags = self.buckets.set_bucket_tags
        self.set_object_lock = self.buckets.set_object_lock
        self.set_lifecycle = self.buckets.set_lifecycle
        self.set_public_access_block = self.buckets.set_public_access_block
        self.set_encryption = self.buckets.set_encryption
        self.head_object = self.objects.head_object
        self.reader = self.objects.reader
        self.put_object = self.objects.put_object
        self.check_condition = self.objects.check_condition
        self.delete_object = self.objects.delete_object
        self.set_object_tags = self.objects.set_object_tags
        self.set_object_acl = self.objects.set_object_acl
        self.set_retention = self.objects.set_retention
        self.set_legal_hold = self.objects.set_legal_hold
        self.list_objects = self.listings.list_objects
        self.list_versions = self.listings.list_versions
        self.create_upload = self.uploads.create_upload
        self.upload = self.uploads.upload
        self.put_part = self.uploads.put_part
        self.list_parts = self.uploads.list_parts
        self.list_uploads = self.uploads.list_uploads
        self.abort_upload = self.uploads.abort_upload
        self.complete_upload = self.uploads.complete_upload
        self.egress = self.accounting.egress
        self.flush_meter = self.accounting.flush
        self.reconcile_meter = self.accounting.reconcile
        self.usage = self.accounting.usage
        self.bucket_usage = self.accounting.bucket_usage
        self.quota_of = self.quotas.quota_of

    @property
    def meter(self) -> Meter:
        """Where billable changes are recorded (the billing service's, set by the server)."""
        return self.accounting.meter

    @meter.setter
    def meter(self, meter: Meter) -> None:
        self.accounting.meter = meter

    @property
    def quota_bytes(self) -> int:
        """The default byte limit of a project without an override (-1: unlimited)."""
        return self.quotas.quota_bytes

    @quota_bytes.setter
    def quota_bytes(self, value: int) -> None:
        self.quotas.quota_bytes = value

    @property
    def quota_objects(self) -> int:
        """The default object limit of a project without an override (-1: unlimited)."""
        return self.quotas.quota_objects

    @quota_objects.setter
    def quota_objects(self, value: int) -> None:
        self.quotas.quota_objects = value

    # ------------------------------------------------------------------ access

    def authenticate(self, access_key: str) -> tuple[str, Principal] | None:
        """(secret, principal) for an access key; None when the key is not usable."""
        found = self.identity.ec2_principal(access_key)
        if found is None:
            return None
        return found.secret, Principal(found.user_id, found.project_id, found.roles)

    def authorize(
        self,
        who: Principal,
        bucket: BucketInfo,
        action: str,
        key: str | None = None,
        object_acl: str | None = None,
        obj: ObjectInfo | None = None,
    ) -> None:
        """AccessDenied unless `who` may do `action` (on `key`; `obj`: the version read)."""
        if not allowed(
            who,
            action,
            bucket_name=bucket.name,
            bucket_project=bucket.project_id,
            bucket_acl=bucket.acl,
            statements=bucket.statements,
            key=key,
            object_acl=object_acl,
            ignore_public_acls=bucket.blocks("IgnorePublicAcls"),
            restrict_public_buckets=bucket.blocks("RestrictPublicBuckets"),
            bucket_grants=bucket.grants,
            object_grants=obj.grants if obj is not None else None,
            object_owner=obj.owner if obj is not None else None,
        ):
            raise S3Error("AccessDenied", "Access Denied", f"/{bucket.name}/{key or ''}")

    @staticmethod
    def refuse_public_acl(
        bucket: BucketInfo, acl: str, grants: list[dict[str, str]] | None = None
    ) -> None:
        """BlockPublicAcls: a public ACL on the bucket or a new object is refused."""
        if bucket.blocks("BlockPublicAcls") and acl_rules.is_public(acl, grants):
            raise S3Error("AccessDenied", "Access Denied", f"/{bucket.name}")

    def may_bypass_governance(self, who: Principal, bucket: BucketInfo, key: str) -> bool:
        """Whether `who` may override GOVERNANCE retention on `key` (see `policy`)."""
        return may_bypass_governance(
            who,
            bucket_name=bucket.name,
            bucket_project=bucket.project_id,
            statements=bucket.statements,
            key=key,
        )

    def owner_only(self, who: Principal, bucket: BucketInfo, write: bool = True) -> None:
        """Bucket configuration belongs to the owning project (writers, for changes)."""
        if who.project_id != bucket.project_id or (write and not who.can_write):
            raise S3Error("AccessDenied", "Access Denied", f"/{bucket.name}")

    # ------------------------------------------------------------------ maintenance

    def recount(self, repair: bool = False) -> list[ledger.BucketUsage]:
        """Every bucket's running totals beside a count of its rows (see `usage.recount`)."""
        return ledger.recount(self.db, repair)

    def referenced_blobs(self) -> set[str]:
        """Every blob a row points at: what the start-up sweep must keep."""
        with self.db.session() as s:
            found = set(s.scalars(select(m.Part.blob_id)).all())
            for segments in s.scalars(select(m.ObjectVersion.segments)):
                found.update(seg[0] for seg in segments)
            return found

    def abort_expired_uploads(self) -> int:
        """Abort one batch of uploads older than `abort_incomplete_after`; how many went.
        The server calls it on its meter round, so their gauges fall at that flush."""
        if self.abort_incomplete_after <= 0:
            return 0
        return self.uploads.abort_expired(self.abort_incomplete_after)

    def run_lifecycle(self) -> Swept:
        """One round of every bucket's lifecycle rules (see `expiration`). The server calls
        it on its meter round, before the flush, so the buckets it shrank are gauged."""
        return self.lifecycle.run()

    def sweep(self) -> int:
        """Remove leftovers of interrupted uploads; run before any request is served."""
        return self.store.sweep(self.referenced_blobs())
