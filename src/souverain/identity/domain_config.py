"""A domain's own configuration (Keystone's domain-specific configuration API).

Only the groups and options Keystone lets a domain override are accepted: the
`identity` group (`driver`, `list_limit`) and the `ldap` group (its connection and
schema options, and `password`, which is sensitive: stored, never shown). Anything
else is refused with a 403 naming it, as Keystone does; a group or option that is
not set is a 404.

What a configuration does here: nothing yet. Souverain keeps every domain's users
and groups in its own database (the `sql` identity driver); a domain's configuration
is stored and shown so that tools written for Keystone can manage it, and the
`identity.driver` it names is not applied. Knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.errors import Forbidden, NotFound
from souverain.identity import models as m
from souverain.identity.core import DEFAULT_DOMAIN_ID, IdentityCore

_LDAP_DEFAULTS: dict[str, Any] = {
    "url": "ldap://localhost",
    "user": None,
    "suffix": "cn=example,cn=com",
    "query_scope": "one",
    "page_size": 0,
    "alias_dereferencing": "default",
    "debug_level": None,
    "chase_referrals": None,
    "user_tree_dn": None,
    "user_filter": None,
    "user_objectclass": "inetOrgPerson",
    "user_id_attribute": "cn",
    "user_name_attribute": "sn",
    "user_mail_attribute": "mail",
    "user_description_attribute": "description",
    "user_pass_attribute": "userPassword",
    "user_enabled_attribute": "enabled",
    "user_enabled_invert": False,
    "user_enabled_mask": 0,
    "user_enabled_default": "True",
    "user_attribute_ignore": ["default_project_id"],
    "user_default_project_id_attribute": None,
    "user_enabled_emulation": False,
    "user_enabled_emulation_dn": None,
    "user_enabled_emulation_use_group_config": False,
    "user_additional_attribute_mapping": [],
    "group_tree_dn": None,
    "group_filter": None,
    "group_objectclass": "groupOfNames",
    "group_id_attribute": "cn",
    "group_name_attribute": "ou",
    "group_members_are_ids": False,
    "group_member_attribute": "member",
    "group_desc_attribute": "description",
    "group_attribute_ignore": [],
    "group_additional_attribute_mapping": [],
    "tls_cacertfile": None,
    "tls_cacertdir": None,
    "use_tls": False,
    "tls_req_cert": "demand",
    "use_pool": True,
    "pool_size": 10,
    "pool_retry_max": 3,
    "pool_retry_delay": 0.1,
    "pool_connection_timeout": -1,
    "pool_connection_lifetime": 600,
    "use_auth_pool": True,
    "auth_pool_size": 100,
    "auth_pool_connection_lifetime": 60,
}

# The options a domain may set, with the cloud's defaults (what /config/default shows).
DEFAULTS: dict[str, dict[str, Any]] = {
    "identity": {"driver": "sql", "list_limit": None},
    "ldap": _LDAP_DEFAULTS,
}
# Options a domain may set that are never shown back (nor in the defaults).
SENSITIVE: dict[str, frozenset[str]] = {"identity": frozenset(), "ldap": frozenset({"password"})}

Config = dict[str, dict[str, Any]]


def invalid(reason: str) -> Forbidden:
    return Forbidden(f"Invalid domain specific configuration: {reason}.")


def check_name(group: str | None, option: str | None) -> None:
    """Refuse (403, as Keystone) a group or option a domain may not set."""
    if group is None:
        return
    if group not in DEFAULTS:
        raise invalid(
            f"Group {group} is not supported for domain specific configurations "
            f"(supported: {', '.join(sorted(DEFAULTS))})"
        )
    if option is not None and option not in DEFAULTS[group] and option not in SENSITIVE[group]:
        raise invalid(
            f"Option {option} in group {group} is not supported for domain specific configurations"
        )


def check_config(config: Any) -> Config:
    """A request's `config`: groups of options, every one of them one a domain may set."""
    if not config:
        raise invalid("No options specified")
    if not isinstance(config, dict):
        raise invalid("config must be an object of groups")
    for group, options in config.items():
        if not options or not isinstance(options, dict):
            raise invalid(
                f"The value of group {group} specified in the config should be a dictionary "
                "of options"
            )
        for option in options:
            check_name(str(group), str(option))
    return config


def _not_found(domain_id: str, group: str | None, option: str | None) -> NotFound:
    if option is not None:
        what = f"option {option} in group {group}"
    elif group is not None:
        what = f"group {group}"
    else:
        what = "any options"
    return NotFound(f"Could not find {what} in domain configuration for domain {domain_id}.")


class DomainConfigs:
    """Each domain's stored configuration: create, read, merge, delete."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    def _rows(
        self, s: Session, domain_id: str, group: str | None = None, option: str | None = None
    ) -> list[m.DomainConfigOption]:
        query = select(m.DomainConfigOption).where(m.DomainConfigOption.domain_id == domain_id)
        if group is not None:
            query = query.where(m.DomainConfigOption.group == group)
        if option is not None:
            query = query.where(m.DomainConfigOption.option == option)
        order = (m.DomainConfigOption.group, m.DomainConfigOption.option)
        return list(s.scalars(query.order_by(*order)).all())

    @staticmethod
    def _shown(rows: list[m.DomainConfigOption]) -> Config:
        config: Config = {}
        for row in rows:
            if not row.sensitive:
                config.setdefault(row.group, {})[row.option] = row.value
        return config

    def _write(self, s: Session, domain_id: str, config: Config) -> None:
        for group, options in config.items():
            for option, value in options.items():
                s.merge(
                    m.DomainConfigOption(
                        domain_id=domain_id,
                        group=group,
                        option=option,
                        value=value,
                        sensitive=option in SENSITIVE[group],
                    )
                )

    def create(self, domain_id: str, config: Any) -> tuple[Config, bool]:
        """Replace the domain's whole configuration; True if it had none before."""
        checked = check_config(config)
        with self.core.db.session() as s:
            self.core.get(s, m.Domain, domain_id, "domain")
            had = bool(self._rows(s, domain_id))
            s.execute(
                delete(m.DomainConfigOption).where(m.DomainConfigOption.domain_id == domain_id)
            )
            self._write(s, domain_id, checked)
            s.flush()
            return self._shown(self._rows(s, domain_id)), not had

    def get(self, domain_id: str, group: str | None, option: str | None) -> dict[str, Any]:
        check_name(group, option)
        with self.core.db.session() as s:
            self.core.get(s, m.Domain, domain_id, "domain")
            shown = self._shown(self._rows(s, domain_id, group, option))
        if not shown:
            raise _not_found(domain_id, group, option)
        if option is not None and group is not None:
            return {option: shown[group][option]}
        return shown

    def update(self, domain_id: str, config: Any, group: str | None, option: str | None) -> Config:
        """Merge options into the configuration; a group or option path updates only it."""
        if group is not None and option is not None:
            config = {group: config}
        checked = check_config(config)
        check_name(group, option)
        if group is not None:
            _only(checked, group, option)
        with self.core.db.session() as s:
            self.core.get(s, m.Domain, domain_id, "domain")
            if group is not None and not self._rows(s, domain_id, group, option):
                raise _not_found(domain_id, group, option)
            self._write(s, domain_id, checked)
            s.flush()
            return self._shown(self._rows(s, domain_id))

    def delete(self, domain_id: str, group: str | None, option: str | None) -> None:
        check_name(group, option)
        with self.core.db.session() as s:
            self.core.get(s, m.Domain, domain_id, "domain")
            rows = self._rows(s, domain_id, group, option)
            if group is not None and not rows:
                raise _not_found(domain_id, group, option)
            for row in rows:
                s.delete(row)

    def security_compliance(self, domain_id: str, option: str | None) -> dict[str, Any]:
        """The password rule users of the default domain must follow, as a regex and a text
        (Keystone's `security_compliance` group, read-only, the default domain only)."""
        with self.core.db.session() as s:
            self.core.get(s, m.Domain, domain_id, "domain")
        if domain_id != DEFAULT_DOMAIN_ID:
            raise invalid(
                "Reading security compliance information for any domain other than the "
                "default domain is not allowed or supported"
            )
        least = self.core.settings.password_min_length
        rule = {
            "password_regex": f"^.{{{least},}}$",
            "password_regex_description": f"A password must be at least {least} characters long.",
        }
        if option is None:
            return {"security_compliance": rule}
        if option not in rule:
            raise invalid(
                "Reading security compliance values other than password_regex and "
                "password_regex_description is not allowed"
            )
        return {option: rule[option]}

    @staticmethod
    def defaults(group: str | None, option: str | None) -> dict[str, Any]:
        """The cloud's defaults for what a domain may set (sensitive options left out)."""
        check_name(group, option)
        if group is None:
            return {g: dict(options) for g, options in DEFAULTS.items()}
        if option is None:
            return {group: dict(DEFAULTS[group])}
        if option not in DEFAULTS[group]:
            raise invalid(
                f"Reading the default for option {option} in group {group} is not supported"
            )
        return {option: DEFAULTS[group][option]}


def _only(config: Config, group: str, option: str | None) -> None:
    """An update through a group's (or an option's) path names that group (option) only."""
    if option is not None and (len(config) != 1 or len(config.get(group, {})) != 1):
        raise invalid(
            f"Trying to update option {option} in group {group}, so that, and only that, "
            "option must be specified in the config"
        )
    if len(config) != 1:
        raise invalid(
            f"Trying to update group {group}, so that, and only that, group must be "
            "specified in the config"
        )
    if group not in config:
        raise invalid(
            f"request to update group {group}, but config provided contains group "
            f"{next(iter(config))} instead"
        )
    if option is not None and option not in config[group]:
        raise invalid(
            f"Trying to update option {option} in group {group}, but config provided "
            f"contains option {next(iter(config[group]))} instead"
        )
