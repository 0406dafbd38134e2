"""Who may do what to a bucket or object: project ownership, bucket policies, canned ACLs.

Pure rules over plain values; no database, no HTTP. An explicit Deny in a
bucket policy wins over everything, then ownership, then an Allow, then ACLs.

s3:BypassGovernanceRetention is the one action ownership alone does not give: a
project member writes and deletes, but only the owning project's admins, or a
principal the bucket policy names in an Allow for it, may shorten or remove
GOVERNANCE retention or delete a version it protects (and only when the request
says `x-amz-bypass-governance-retention: true`). A Deny still wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from souverain.objectstore import acl as acl_rules
from souverain.objectstore.policy_conditions import (
    Condition,
    ConditionError,
    parse_conditions,
    pins_callers,
)

CANNED_ACLS = acl_rules.CANNED

# Actions that only read; a project reader may do these and nothing else.
READ_ACTIONS = frozenset(
    {
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:ListBucketMultipartUploads",
        "s3:ListMultipartUploadParts",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:GetObjectAcl",
        "s3:GetBucketLocation",
        "s3:GetBucketVersioning",
        "s3:GetBucketAcl",
        "s3:GetBucketPolicy",
        "s3:GetBucketCORS",
        "s3:GetBucketTagging",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:GetObjectAttributes",
        "s3:GetObjectVersionAttributes",
    }
)
BYPASS_GOVERNANCE = "s3:BypassGovernanceRetention"


MAX_POLICY_BYTES = 20 * 1024


@dataclass(frozen=True)
class Principal:
    """The caller: a user acting in a project, or anonymous (all None)."""

    user_id: str | None = None
    project_id: str | None = None
    roles: frozenset[str] = frozenset()
    # What bucket policy conditions test (aws:SourceIp, s3:prefix, ...), lower-case keys;
    # filled only for buckets whose policy has conditions.
    context: Mapping[str, str] | None = field(default=None, compare=False, hash=False)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    @property
    def can_write(self) -> bool:
        return bool(self.roles & {"member", "admin"})


ANONYMOUS = Principal()


class PolicyError(ValueError):
    """The policy document is not one we accept; the message says why."""


@dataclass(frozen=True)
class Statement:
    effect: str
    principals: tuple[str, ...]  # "*", "<project>", "<project>:<user>"
    actions: tuple[Glob, ...]
    resources: tuple[Glob, ...]
    conditions: tuple[Condition, ...] = ()

    @property
    def public(self) -> bool:
        """Allows anyone at all: Principal "*" with no condition pinning who calls."""
        return (
            self.effect == "Allow" and "*" in self.principals and not pins_callers(self.conditions)
        )


@dataclass(frozen=True)
class Glob:
    """An IAM wildcard: `*` any run, `?` one character; everything else literal.

    Matched by walking the text once and going back only to the last `*`, so the cost
    is at most the pattern's length times the text's. A regular expression with one
    `.*` per star backtracked exponentially: `b/*a*a*a*a*a*c` against a long key held
    a worker for minutes, and any bucket owner may write such a policy.
    """

    pattern: str

    def match(self, text: str) -> bool:
        pattern, p, t = self.pattern, 0, 0
        star, resume = -1, 0  # the last `*` seen, and where in the text it took over
        while t < len(text):
            if p < len(pattern) and pattern[p] == "*":
                star, resume = p, t
                p += 1
            elif p < len(pattern) and pattern[p] in ("?", text[t]):
                p += 1
                t += 1
            elif star >= 0:
                p, resume = star + 1, resume + 1
                t = resume
            else:
                return False
        return pattern[p:].strip("*") == ""


def _glob(pattern: str) -> Glob:
    return Glob(pattern)


def _as_list(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise PolicyError(f"{what} must be a string or a list of strings")
    return items


_USER_ARN = re.compile(r"^arn:aws:iam::([^:]+):(root|user/(.+))$")


def _principal(entry: str) -> str:
    if entry == "*":
        return "*"
    match = _USER_ARN.match(entry)
    if match:
        project, _, user = match.groups()
        return project if user is None else f"{project}:{user}"
    if re.fullmatch(r"[0-9a-zA-Z_-]{1,64}", entry):
        return entry  # a bare project id, as AWS takes a bare account id
    raise PolicyError(
        f"Principal {entry!r} is not '*', a project id, arn:aws:iam::PROJECT:root "
        "or arn:aws:iam::PROJECT:user/USER_ID"
    )


def parse_policy(text: str, bucket: str) -> list[Statement]:
    """Validate a bucket policy document; raise PolicyError naming what is wrong."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError(f"Policies are limited to {MAX_POLICY_BYTES} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # nesting deeper than Python's stack: not a policy
        raise PolicyError("Policies must be valid JSON") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise PolicyError("Missing required field Statement")
    raw = doc["Statement"]
    raw_statements = raw if isinstance(raw, list) else [raw]
    statements: list[Statement] = []
    for item in raw_statements:
        if not isinstance(item, dict):
            raise PolicyError("Each statement must be an object")
        if item.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        if "NotAction" in item or "NotPrincipal" in item or "NotResource" in item:
            raise PolicyError("NotAction, NotPrincipal and NotResource are not supported here")
        try:
            conditions = parse_conditions(item["Condition"]) if "Condition" in item else ()
        except ConditionError as exc:
            raise PolicyError(str(exc)) from None
        principal = item.get("Principal")
        if isinstance(principal, dict):
            principal = principal.get("AWS")
        principals = tuple(_principal(p) for p in _as_list(principal, "Principal"))
        actions = _as_list(item.get("Action"), "Action")
        for action in actions:
            if not (action == "*" or action.startswith("s3:")):
                raise PolicyError(f"Action {action!r} is not an s3: action")
        resources = _as_list(item.get("Resource"), "Resource")
        for resource in resources:
            name = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
            if not resource.startswith("arn:aws:s3:::") or not _glob(name).match(bucket):
                raise PolicyError(f"Resource {resource!r} must be within this bucket")
        statements.append(
            Statement(
                effect=item["Effect"],
                principals=principals,
                actions=tuple(_glob(a if a != "*" else "s3:*") for a in actions),
                resources=tuple(_glob(r) for r in resources),
                conditions=conditions,
            )
        )
    return statements


def _matches(statement: Statement, who: Principal, action: str, resource: str) -> bool:
    if not any(p.match(action) for p in statement.actions):
        return False
    if not any(r.match(resource) for r in statement.resources):
        return False
    if not any(_names(p, who) for p in statement.principals):
        return False
    context = who.context or {}
    return all(c.holds(context) for c in statement.conditions)


def _names(principal: str, who: Principal) -> bool:
    if principal == "*":
        return True
    return who.project_id is not None and (
        principal == who.project_id or principal == f"{who.project_id}:{who.user_id}"
    )


def is_public(statements: list[Statement]) -> bool:
    """Whether a policy grants anything to anyone at all (see `Statement.public`)."""
    return any(s.public for s in statements)


def resource_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


def allowed(
    who: Principal,
    action: str,
    *,
    bucket_name: str,
    bucket_project: str,
    bucket_acl: str,
    statements: list[Statement],
    key: str | None = None,
    object_acl: str | None = None,
    ignore_public_acls: bool = False,
    restrict_public_buckets: bool = False,
    bucket_grants: list[dict[str, str]] | None = None,
    object_grants: list[dict[str, str]] | None = None,
    object_owner: str | None = None,
) -> bool:
    """May `who` do `action` on the bucket (or on `key` in it)?

    The last two are the bucket's public access block: public ACLs count for nothing,
    and a public policy lets no one outside the owning project in."""
    resource = resource_arn(bucket_name, key)
    if any(s.effect == "Deny" and _matches(s, who, action, resource) for s in statements):
        return False
    if who.project_id is not None and who.project_id == bucket_project:
        return who.can_write or action in READ_ACTIONS
    if not (restrict_public_buckets and is_public(statements)) and any(
        s.effect == "Allow" and _matches(s, who, action, resource) for s in statements
    ):
        return True
    # Last, the ACLs: the bucket's, then the object's (canned or explicit grants).
    grants = acl_rules.grants_of(bucket_acl, bucket_grants, bucket_project)
    if acl_rules.permits(
        grants, who.project_id, action, acl_rules.BUCKET_ACTIONS, ignore_public_acls
    ):
        return True
    if object_acl is None:
        return False
    grants = acl_rules.grants_of(
        object_acl, object_grants, object_owner or bucket_project, bucket_project
    )
    return acl_rules.permits(
        grants, who.project_id, action, acl_rules.OBJECT_ACTIONS, ignore_public_acls
    )


def may_bypass_governance(
    who: Principal,
    *,
    bucket_name: str,
    bucket_project: str,
    statements: list[Statement],
    key: str,
) -> bool:
    """May `who` override GOVERNANCE retention on `key`? (See the module's note.)"""
    if who.anonymous:
        return False
    resource = resource_arn(bucket_name, key)
    if any(
        s.effect == "Deny" and _matches(s, who, BYPASS_GOVERNANCE, resource) for s in statements
    ):
        return False
    if who.project_id == bucket_project and "admin" in who.roles:
        return True
    return any(
        s.effect == "Allow" and _matches(s, who, BYPASS_GOVERNANCE, resource) for s in statements
    )
