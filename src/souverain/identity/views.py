"""Keystone v3 wire shapes: tokens, self links, pages of a collection, version documents.

Only shaping lives here: what the service returns, laid out as Keystone clients
read it. No rule and no database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from souverain.common.clock import isotime
from souverain.identity.catalog import for_project
from souverain.identity.service import TokenView

API_VERSION = "v3.14"
MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"
UPDATED = "2020-04-07T00:00:00Z"


def version_doc(base: str) -> dict[str, Any]:
    return {
        "id": API_VERSION,
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base}/v3/"}],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    }


def with_link(base: str, collection: str, ref: dict[str, Any]) -> dict[str, Any]:
    """A copy of `ref` with its self link under `collection`."""
    ref = dict(ref)
    ref["links"] = {"self": f"{base}/v3/{collection}/{ref['id']}"}
    return ref


def token_body(view: TokenView, catalog: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A token as Keystone shows it; a scoped token carries its roles and, unless asked
    not to (`catalog` None), the catalog."""
    p = view.payload
    token: dict[str, Any] = {
        "methods": list(p.methods),
        "user": view.user,
        "audit_ids": list(p.audit_ids),
        "expires_at": isotime(dt.datetime.fromtimestamp(p.expires_at, dt.UTC)),
        "issued_at": isotime(dt.datetime.fromtimestamp(p.issued_at, dt.UTC)),
    }
    if view.project is not None:
        token["project"] = view.project
        token["is_domain"] = False
    elif view.domain is not None:
        token["domain"] = view.domain
    elif p.system:
        token["system"] = {"all": True}
    if view.project is not None or view.domain is not None or p.system:
        token["roles"] = view.roles
        if catalog is not None:
            token["catalog"] = for_project(catalog, p.project_id)
    if view.app_cred is not None:
        token["application_credential"] = view.app_cred
    if view.trust is not None:
        token["OS-TRUST:trust"] = view.trust
    return {"token": token}


def with_assignment_links(base: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each role assignment with the URL of its grant, and of the group membership it
    comes through when it was expanded from a group."""
    for item in items:
        via = item.pop("_via_group", None)
        prior = item.pop("_prior_role", None)
        scope_kind = next(iter(item["scope"]))
        actor_kind = "user" if "user" in item else "group"
        actor_id, role_id = item[actor_kind]["id"], item["role"]["id"]
        if scope_kind == "system":
            path = f"system/{actor_kind}s/{actor_id}/roles/{role_id}"
        else:
            scope_id = item["scope"][scope_kind].get("id", "")
            path = f"{scope_kind}s/{scope_id}/{actor_kind}s/{actor_id}/roles/{role_id}"
            if "OS-INHERIT:inherited_to" in item["scope"]:
                path = f"OS-INHERIT/{path}/inherited_to_projects"
        links: dict[str, str] = {"assignment": f"{base}/v3/{path}"}
        if via:
            links["membership"] = f"{base}/v3/groups/{via}/users/{actor_id}"
        if prior:
            links["prior_role"] = f"{base}/v3/roles/{prior}"
        item["links"] = links
    return items


def role_inference(
    base: str, prior: dict[str, Any], implied: list[dict[str, Any]] | dict[str, Any]
) -> dict[str, Any]:
    """A prior role and what it implies (a list, or one role), each with its self link."""

    def brief(role: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": role["id"],
            "name": role["name"],
            "links": {"self": f"{base}/v3/roles/{role['id']}"},
        }

    implies = [brief(r) for r in implied] if isinstance(implied, list) else brief(implied)
    return {"prior_role": brief(prior), "implies": implies}
