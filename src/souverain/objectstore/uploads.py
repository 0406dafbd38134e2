"""Multipart uploads: start, parts in, list, abort, and complete into a key's new version.

A part's bytes are durable in their own blob before `put_part` records them;
completing an upload makes the chosen parts' blobs the new version's segments,
in one transaction with the removal of the upload and its unused parts. Parts
count toward the bucket's totals (so its quota and its `object.gb` gauge) until
then; an upload left unfinished past the operator's limit is aborted by the
server (`abort_expired`) as its client's abort would. Knows nothing of HTTP or XML.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.common.ids import new_id
from souverain.db.engine import Database
from souverain.objectstore import conditional, crc64nvme, locks
from souverain.objectstore import models as m
from souverain.objectstore.accounting import Accounting, count
from souverain.objectstore.conditional import WriteCondition
from souverain.objectstore.errors import S3Error
from souverain.objectstore.metering import MeteredBucket
from souverain.objectstore.objects import LATEST_STATE, found_in, new_version_id, retire
from souverain.objectstore.policy import Principal
from souverain.objectstore.quotas import Quotas
from souverain.objectstore.records import (
    BucketInfo,
    NewObject,
    ObjectInfo,
    PartInfo,
    Sealed,
    UploadInfo,
    check_key,
    check_tags,
    successor,
    utcnow,
)
from souverain.objectstore.store import BlobStore, new_hash
from souverain.objectstore.transactions import begin_write

EXPIRED_BATCH = 100  # uploads the server aborts in one round, one short transaction each


def check_part_list(wanted: Sequence[tuple[int, str]], upload_id: str) -> None:
    """A completion names at least one part, in ascending order, each once."""
    if not wanted:
        raise S3Error("MalformedXML", "You must specify at least one part to complete an upload.")
    numbers = [n for n, _ in wanted]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise S3Error(
            "InvalidPartOrder",
            "The list of parts was not in ascending order. Parts must be ordered by part number.",
            upload_id,
        )


def composite_checksums(algorithm: str, parts: Iterable[m.Part]) -> dict[str, str]:
    """S3's checksum of checksums for multipart objects: `base64(H(h1||h2..))-N`."""
    chosen = list(parts)
    if not algorithm or not all(algorithm in p.checksums for p in chosen):
        return {}
    if algorithm == "crc64nvme":  # S3 gives these the whole object's CRC, not composite
        total = 0
        for p in chosen:
            part = int.from_bytes(base64.b64decode(p.checksums[algorithm]), "big")
            total = crc64nvme.combine(total, part, p.size)
        return {algorithm: base64.b64encode(total.to_bytes(8, "big")).decode()}
    digest = new_hash(algorithm)
    for p in chosen:
        digest.update(base64.b64decode(p.checksums[algorithm]))
    return {algorithm: f"{base64.b64encode(digest.digest()).decode()}-{len(chosen)}"}


class Uploads:
    """Multipart uploads in progress and their parts, until completed or aborted."""

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        accounting: Accounting,
        quotas: Quotas,
        clock: Clock,
        min_part_bytes: int,
    ) -> None:
        self.db = db
        self.store = store
        self.accounting = accounting
        self.quotas = quotas
        self.clock = clock
        self.min_part_bytes = min_part_bytes

    def create_upload(
        self, who: Principal, bucket: BucketInfo, key: str, template: NewObject, algorithm: str
    ) -> UploadInfo:
        check_key(key)
        check_tags(template.tags)
        with self.db.session() as s:
            row = m.Upload(
                id=new_id() + new_id(),
                bucket_id=bucket.id,
                key=key,
                initiator_user_id=who.user_id or "",
                owner_project_id=who.project_id or bucket.project_id,
                created_at=utcnow(self.clock),
                headers=template.headers,
                user_meta=template.user_meta,
                tags=template.tags,
                acl=template.acl,
                checksum_algorithm=algorithm,
                lock_mode=template.lock_mode,
                lock_until=template.lock_until,
                legal_hold=template.legal_hold,
                grants=template.grants,
                **template.sse,
            )
            s.add(row)
            s.flush()
            return self._upload_info(bucket.name, row)

    @staticmethod
    def _upload_info(bucket: str, row: m.Upload) -> UploadInfo:
        return UploadInfo(
            row.id,
            bucket,
            row.key,
            row.initiator_user_id,
            row.owner_project_id,
            row.created_at,
            dict(row.headers),
            dict(row.user_meta),
            dict(row.tags),
            row.acl,
            row.checksum_algorithm,
            row.lock_mode,
            row.lock_until,
            row.legal_hold,
            Sealed.of(row),
        )

    def _upload_row(self, s: Session, bucket: BucketInfo, key: str, upload_id: str) -> m.Upload:
        row = s.get(m.Upload, upload_id)
        if row is None or row.bucket_id != bucket.id or row.key != key:
            raise S3Error(
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the "
                "upload may have been aborted or completed.",
                upload_id,
            )
        return row

    def upload(self, bucket: BucketInfo, key: str, upload_id: str) -> UploadInfo:
        with self.db.session() as s:
            info = self._upload_info(bucket.name, self._upload_row(s, bucket, key, upload_id))
        if info.sse is not None:  # opened with the bucket owner's keys
            info.sse = dataclasses.replace(info.sse, project=bucket.project_id)
        return info

    def put_part(
        self,
        bucket: BucketInfo,
        key: str,
        upload_id: str,
        number: int,
        blob_id: str,
        size: int,
        etag: str,
        checksums: dict[str, str],
    ) -> None:
        freed: list[str] = []
        try:
            with self.db.session() as s:
                begin_write(s)
                limits = self.quotas.lock(s.connection(), bucket.project_id)
                self._upload_row(s, bucket, key, upload_id)
                old = s.get(m.Part, (upload_id, number))
                if old is not None:
                    freed.append(old.blob_id)
                    count(s.connection(), bucket.id, -old.size, 0)
                    s.delete(old)
                    s.flush()
                count(s.connection(), bucket.id, size, 0)
                self.quotas.check(s.connection(), bucket.project_id, limits, size)
                s.add(
                    m.Part(
                        upload_id=upload_id,
                        number=number,
                        size=size,
                        etag=etag,
                        blob_id=blob_id,
                        checksums=checksums,
                        created_at=utcnow(self.clock),
                    )
                )
        except BaseException:
            self.store.delete([blob_id])
            raise
        self.store.delete(freed)
        self.accounting.changed(bucket)

    def list_parts(
        self, bucket: BucketInfo, key: str, upload_id: str, after: int, max_parts: int
    ) -> tuple[UploadInfo, list[PartInfo], bool]:
        with self.db.session() as s:
            upload = self._upload_info(bucket.name, self._upload_row(s, bucket, key, upload_id))
            rows = s.scalars(
                select(m.Part)
                .where(m.Part.upload_id == upload_id, m.Part.number > after)
                .order_by(m.Part.number)
                .limit(max_parts + 1)
            ).all()
            parts = [
                PartInfo(r.number, r.size, r.etag, r.blob_id, dict(r.checksums), r.created_at)
                for r in rows
            ]
            return upload, parts[:max_parts], len(parts) > max_parts

    def list_uploads(
        self,
        bucket: BucketInfo,
        prefix: str,
        key_marker: str,
        upload_marker: str,
        max_uploads: int,
    ) -> tuple[list[UploadInfo], bool]:
        u = m.Upload
        with self.db.session() as s:
            query = select(u).where(u.bucket_id == bucket.id)
            if prefix:
                query = query.where(u.key >= prefix, u.key < successor(prefix))
            if key_marker and upload_marker:
                query = query.where(
                    (u.key > key_marker) | ((u.key == key_marker) & (u.id > upload_marker))
                )
            elif key_marker:
                query = query.where(u.key > key_marker)
            rows = s.scalars(query.order_by(u.key, u.id).limit(max_uploads + 1)).all()
            found = [self._upload_info(bucket.name, r) for r in rows]
            return found[:max_uploads], len(found) > max_uploads

    def abort_upload(self, bucket: BucketInfo, key: str, upload_id: str) -> None:
        with self.db.session() as s:
            begin_write(s)
            self._upload_row(s, bucket, key, upload_id)
            freed = self._drop(s, bucket.id, upload_id)
        self.store.delete(freed)
        self.accounting.changed(bucket)

    @staticmethod
    def _drop(s: Session, bucket_id: str, upload_id: str) -> list[str]:
        """Remove an upload and its parts, their bytes out of the bucket's totals (and so
        out of the quota); the part blobs to delete once this commits."""
        parts = s.execute(
            select(m.Part.blob_id, m.Part.size).where(m.Part.upload_id == upload_id)
        ).all()
        s.execute(delete(m.Part).where(m.Part.upload_id == upload_id))
        s.execute(delete(m.Upload).where(m.Upload.id == upload_id))
        count(s.connection(), bucket_id, -sum(p.size for p in parts), 0)
        return [p.blob_id for p in parts]

    def abort_expired(self, max_age: float, limit: int = EXPIRED_BATCH) -> int:
        """Abort uploads started more than `max_age` seconds ago, as S3 lifecycle's
        AbortIncompleteMultipartUpload does; the number aborted.

        At most `limit` a call, the oldest first, each in its own short transaction like
        a client's abort, so the database is never held for long; the rest wait for the
        next call. An upload completed or aborted meanwhile (by its client, or by the
        sweep of another serving process) is skipped. A part file a crash leaves behind
        is removed by the start-up sweep: no row points at it any more."""
        cutoff = utcnow(self.clock) - dt.timedelta(seconds=max_age)
        u, b = m.Upload, m.Bucket
        with self.db.session() as s:
            expired = s.execute(
                select(u.id, b.id, b.project_id, b.name)
                .join(b, b.id == u.bucket_id)
                .where(u.created_at < cutoff)
                .order_by(u.created_at)
                .limit(limit)
            ).all()
        aborted = 0
        for upload_id, bucket_id, project_id, name in expired:
            with self.db.session() as s:
                begin_write(s)
                # locked, so a sweep of another process waits here and then finds it gone
                if s.get(m.Upload, upload_id, with_for_update=True) is None:
                    continue
                freed = self._drop(s, bucket_id, upload_id)
            self.store.delete(freed)
            self.accounting.pending.changed(MeteredBucket(bucket_id, project_id, name))
            aborted += 1
        return aborted

    def complete_upload(
        self,
        who: Principal,
        bucket: BucketInfo,
        key: str,
        upload_id: str,
        wanted: Sequence[tuple[int, str]],
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Join the listed parts into the key's new version; unlisted parts are dropped.

        A `condition` that fails leaves the upload as it was, to retry: 412 (or 404), or
        409 ConditionalRequestConflict when the key was written since the upload began."""
        check_part_list(wanted, upload_id)
        with self.db.session() as s:
            begin_write(s)
            limits = self.quotas.lock(s.connection(), bucket.project_id)
            upload = self._upload_row(s, bucket, key, upload_id)
            if condition is not None:
                self._check_condition(s, bucket, upload, condition)
            parts = {
                p.number: p for p in s.scalars(select(m.Part).where(m.Part.upload_id == upload_id))
            }
            chosen = self._chosen_parts(parts, wanted, upload_id)
            used = {p.number for p in chosen}
            unused = [p for n, p in parts.items() if n not in used]
            version_id = new_version_id(bucket)
            retired = retire(s.connection(), bucket, key, version_id)
            freed = [p.blob_id for p in unused] + retired.blobs
            # the chosen parts' bytes stay, now counted as the object's
            count(
                s.connection(),
                bucket.id,
                -sum(p.size for p in unused) - retired.size,
                1 - retired.objects,
            )
            row = self._joined_version(upload, bucket.id, version_id, chosen)
            if bucket.object_lock and row.lock_mode is None:
                default = locks.default_retention(bucket.object_lock, row.created_at)
                if default is not None:
                    row.lock_mode, row.lock_until = default.mode, default.until
            s.add(row)
            s.execute(delete(m.Part).where(m.Part.upload_id == upload_id))
            s.delete(upload)
            s.flush()
            self.quotas.check(s.connection(), bucket.project_id, limits, row.size)
            info = found_in(bucket, row)
        self.store.delete(freed)
        self.accounting.changed(bucket)
        return info

    @staticmethod
    def _check_condition(
        s: Session, bucket: BucketInfo, upload: m.Upload, condition: WriteCondition
    ) -> None:
        where = {"b_bucket": bucket.id, "b_key": upload.key}
        latest = s.connection().execute(LATEST_STATE, where).first()
        code = conditional.failure(latest, condition)
        if code is None:
            return
        if latest is not None and latest.created_at >= upload.created_at:
            code = "ConditionalRequestConflict"  # written while the parts came in
        raise conditional.refuse(code, f"/{bucket.name}/{upload.key}")

    def _chosen_parts(
        self, parts: dict[int, m.Part], wanted: Sequence[tuple[int, str]], upload_id: str
    ) -> list[m.Part]:
        """The parts a completion names, each matching its ETag; all but the last big enough."""
        chosen: list[m.Part] = []
        for number, etag in wanted:
            part = parts.get(number)
            if part is None or part.etag != etag.strip('"'):
                raise S3Error(
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may "
                    "not have been uploaded, or the specified entity tag may not match "
                    "the part's entity tag.",
                    upload_id,
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self.min_part_bytes:
                raise S3Error(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size: "
                    f"every part but the last must be at least {self.min_part_bytes} bytes.",
                    upload_id,
                )
        return chosen

    def _joined_version(
        self, upload: m.Upload, bucket_id: str, version_id: str, chosen: list[m.Part]
    ) -> m.ObjectVersion:
        """The key's new latest version, made of the chosen parts' blobs in order."""
        md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
        etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
        return m.ObjectVersion(
            bucket_id=bucket_id,
            key=upload.key,
            version_id=version_id,
            is_latest=True,
            is_delete_marker=False,
            size=sum(p.size for p in chosen),
            etag=etag,
            segments=[[p.blob_id, p.size] for p in chosen],
            headers=dict(upload.headers),
            user_meta=dict(upload.user_meta),
            checksums=composite_checksums(upload.checksum_algorithm, chosen),
            tags=dict(upload.tags),
            acl=upload.acl,
            owner_project_id=upload.owner_project_id,
            created_at=utcnow(self.clock),
            lock_mode=upload.lock_mode,
            lock_until=upload.lock_until,
            legal_hold=upload.legal_hold,
            grants=upload.grants,
            sse_mode=upload.sse_mode,
            sse_key_id=upload.sse_key_id,
            sse_wrapped=upload.sse_wrapped,
            sse_customer=upload.sse_customer,
            # each part was sealed with its number: the reader opens segment i as part n
            sse_parts=[p.number for p in chosen] if upload.sse_mode else None,
        )
