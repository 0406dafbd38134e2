"""The key manager's facade: one object holding its resource families (secrets,
containers, their consumers, orders, ACLs, quotas) over one `Core`, and its `ProjectKeys`
for the services that encrypt at rest. Built by server.py; it holds the root of trust and
closes it."""

from __future__ import annotations

from souverain.common.clock import Clock
from souverain.db.engine import Database
from souverain.keymanager.acls import Acls
from souverain.keymanager.consumers import Consumers
from souverain.keymanager.containers import Containers
from souverain.keymanager.core import Core
from souverain.keymanager.keks import ProjectKeks
from souverain.keymanager.orders import Orders
from souverain.keymanager.project_keys import KeyManagerKeys
from souverain.keymanager.quotas import Quotas
from souverain.keymanager.root import RootOfTrust
from souverain.keymanager.secrets import Secrets


class KeyManagerService:
    def __init__(self, db: Database, root: RootOfTrust, clock: Clock) -> None:
        self.root = root
        self.core = Core(db, clock, ProjectKeks(db, root, clock))
        self.quotas = Quotas(self.core)
        self.consumers = Consumers(self.core, self.quotas)
        self.secrets = Secrets(self.core, self.quotas, self.consumers)
        self.containers = Containers(self.core, self.quotas, self.consumers)
        self.orders = Orders(self.core, self.quotas, self.secrets, self.containers)
        self.acls = Acls(self.core)
        self.project_keys = KeyManagerKeys(self.core.keks, self.secrets, self.consumers)

    def close(self) -> None:
        self.root.close()
