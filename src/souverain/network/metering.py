"""Metering labels and their rules (Neutron's metering extension): an admin's traffic
meters over routers. Rows only; `wiring` writes each router's counters.

A label counts the traffic through the gateway of every router of its project (of every
project when shared); its rules say which traffic, an excluded rule keeps traffic out.
After each change the routers concerned are synced, so the counters follow the rows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Conflict, NotFound
from souverain.common.ids import new_id
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.fields import owner_named
from souverain.network.schemas_metering import LabelBody, MeterRuleBody


class MeteringLabelNotFound(NotFound):
    title = "MeteringLabelNotFound"


class MeteringLabelRuleNotFound(NotFound):
    title = "MeteringLabelRuleNotFound"


class MeteringLabelRuleOverlaps(Conflict):
    title = "MeteringLabelRuleOverlaps"


@dataclass(frozen=True)
class LabelState:
    """A label as a router's counters take it: its id and its rules, oldest first."""

    label_id: str
    rules: tuple[m.MeteringLabelRule, ...]


class Metering(Part):
    """Metering labels and label rules; admins only (the policy table says so)."""

    def _label(self, s: Session, label_id: object) -> m.MeteringLabel:
        row = s.get(m.MeteringLabel, label_id) if isinstance(label_id, str) else None
        if row is None:
            raise MeteringLabelNotFound(f"Metering label {str(label_id)[:64]} does not exist")
        return row

    def create_label(self, ctx: RequestContext, body: LabelBody) -> m.MeteringLabel:
        project_id = owner_named(ctx, body.owner)
        with self.db.session() as s:
            row = m.MeteringLabel(
                id=new_id(),
                project_id=project_id,
                name=body.name,
                description=body.description,
                shared=body.shared,
                created_at=self._now(),
            )
            s.add(row)
            s.flush()
        return row

    def get_label(self, ctx: RequestContext, label_id: str) -> m.MeteringLabel:
        with self.db.session() as s:
            return self._label(s, label_id)

    def list_labels(self, ctx: RequestContext) -> list[m.MeteringLabel]:
        with self.db.session() as s:
            return list(s.scalars(select(m.MeteringLabel)).all())

    def delete_label(self, ctx: RequestContext, label_id: str) -> None:
        with self.db.session() as s:
            row = self._label(s, label_id)
            shared, project_id = row.shared, row.project_id
            s.delete(row)
        self._sync(project_id, shared)

    def create_rule(self, ctx: RequestContext, body: MeterRuleBody) -> m.MeteringLabelRule:
        with self.db.session() as s:
            label = self._label(s, body.metering_label_id)
            self._refuse_overlap(s, label.id, body)
            row = m.MeteringLabelRule(
                id=new_id(),
                metering_label_id=label.id,
                direction=body.direction,
                excluded=body.excluded,
                remote_ip_prefix=body.remote_ip_prefix,
                source_ip_prefix=body.source_ip_prefix,
                destination_ip_prefix=body.destination_ip_prefix,
                created_at=self._now(),
            )
            s.add(row)
            s.flush()
            shared, project_id = label.shared, label.project_id
        self._sync(project_id, shared)
        return row

    def _refuse_overlap(self, s: Session, label_id: str, body: MeterRuleBody) -> None:
        """Neutron's rule: two rules of a label with one direction and remote prefix may
        not overlap."""
        if body.remote_ip_prefix is None:
            return
        mine = ipaddress.ip_network(body.remote_ip_prefix)
        for other in s.scalars(
            select(m.MeteringLabelRule).where(
                m.MeteringLabelRule.metering_label_id == label_id,
                m.MeteringLabelRule.direction == body.direction,
                m.MeteringLabelRule.remote_ip_prefix.is_not(None),
            )
        ).all():
            assert other.remote_ip_prefix is not None
            if mine.overlaps(ipaddress.ip_network(other.remote_ip_prefix)):
                raise MeteringLabelRuleOverlaps(
                    f"Metering label rule with remote_ip_prefix {body.remote_ip_prefix} "
                    "overlaps another."
                )

    def get_rule(self, ctx: RequestContext, rule_id: str) -> m.MeteringLabelRule:
        with self.db.session() as s:
            return self._rule(s, rule_id)

    def _rule(self, s: Session, rule_id: object) -> m.MeteringLabelRule:
        row = s.get(m.MeteringLabelRule, rule_id) if isinstance(rule_id, str) else None
        if row is None:
            raise MeteringLabelRuleNotFound(
                f"Metering label rule {str(rule_id)[:64]} does not exist"
            )
        return row

    def list_rules(self, ctx: RequestContext) -> list[m.MeteringLabelRule]:
        with self.db.session() as s:
            return list(s.scalars(select(m.MeteringLabelRule)).all())

    def delete_rule(self, ctx: RequestContext, rule_id: str) -> None:
        with self.db.session() as s:
            row = self._rule(s, rule_id)
            label = self._label(s, row.metering_label_id)
            shared, project_id = label.shared, label.project_id
            s.delete(row)
        self._sync(project_id, shared)

    # ------------------------------------------------------------------ for the routers

    def labels_of(self, s: Session, project_id: str) -> list[LabelState]:
        """The labels that count a router of `project_id`: its project's and shared ones."""
        labels = s.scalars(
            select(m.MeteringLabel)
            .where((m.MeteringLabel.project_id == project_id) | m.MeteringLabel.shared)
            .order_by(m.MeteringLabel.created_at, m.MeteringLabel.id)
        ).all()
        out = []
        for label in labels:
            rules = s.scalars(
                select(m.MeteringLabelRule)
                .where(m.MeteringLabelRule.metering_label_id == label.id)
                .order_by(m.MeteringLabelRule.created_at, m.MeteringLabelRule.id)
            ).all()
            out.append(LabelState(label.id, tuple(rules)))
        return out

    def _sync(self, project_id: str, shared: bool) -> None:
        if self.routing is None:
            return
        with self.db.session() as s:
            stmt = select(m.Router.id)
            if not shared:
                stmt = stmt.where(m.Router.project_id == project_id)
            router_ids = list(s.scalars(stmt).all())
        for router_id in router_ids:
            self.wiring.sync_router(router_id)
