"""What object storage owes the meter, noted in memory on the request path.

A request only notes which bucket changed (`changed`) or how many bytes of a GET
body left the cloud (`sent`); nothing here touches the database or the disk. The
service's `flush_meter` takes what was noted (`take`) every
`objectstore.meter_interval` seconds and at shutdown, and writes it in one commit:
one `object.gb` gauge per changed bucket, read from the running totals at that
moment, and one `egress.gb` counter per bucket and hour. Consequences, documented
for billing: a bucket's gauge follows its size up to one interval late, so its
GiB-hours move by less than one interval's worth of each change; a process killed
by SIGKILL loses the egress it had not flushed (at most one interval), and the
start-up reconciliation re-gauges buckets whose last gauge is not their size.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MeteredBucket:
    """A bucket as the meter names it: events carry the project and the bucket's name."""

    id: str
    project_id: str
    name: str


@dataclass
class Sent:
    """Bytes of GET bodies of one bucket in one hour, and when the last of them left."""

    size: int
    at: dt.datetime


@dataclass
class Noted:
    """What the meter has not been told yet."""

    changed: dict[str, MeteredBucket] = field(default_factory=dict)
    egress: dict[tuple[MeteredBucket, dt.datetime], Sent] = field(default_factory=dict)

    def merge(self, older: Noted) -> None:
        """Put back what a failed flush took, under what was noted since."""
        for bucket_id, bucket in older.changed.items():
            self.changed.setdefault(bucket_id, bucket)
        for key, sent in older.egress.items():
            current = self.egress.get(key)
            if current is None:
                self.egress[key] = sent
            else:
                current.size += sent.size


class PendingMeter:
    """Thread-safe notes of one process; `take` hands them over and starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._noted = Noted()

    def changed(self, bucket: MeteredBucket) -> None:
        with self._lock:
            self._noted.changed[bucket.id] = bucket

    def sent(self, bucket: MeteredBucket, size: int, at: dt.datetime) -> None:
        hour = at.replace(minute=0, second=0, microsecond=0)
        with self._lock:
            slot = self._noted.egress.get((bucket, hour))
            if slot is None:
                self._noted.egress[(bucket, hour)] = Sent(size, at)
            else:
                slot.size += size
                slot.at = at

    def take(self) -> Noted:
        with self._lock:
            noted, self._noted = self._noted, Noted()
        return noted

    def give_back(self, noted: Noted) -> None:
        with self._lock:
            self._noted.merge(noted)
