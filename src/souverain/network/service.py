"""Network rules (placeholder: replaced by the network service)."""

from __future__ import annotations

from souverain.common.clock import Clock
from souverain.config import NetworkSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService


class NetworkService:
    def __init__(
        self, db: Database, identity: IdentityService, clock: Clock, settings: NetworkSettings
    ) -> None:
        self.db = db
        self.identity = identity
        self.clock = clock
        self.settings = settings

    def set_up(self) -> None:
        return None

    def close(self) -> None:
        return None
