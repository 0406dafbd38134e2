"""`server.roles` / `serve --roles`: which parts of the cloud one node runs."""

from __future__ import annotations

import warnings

import pytest
from typer.testing import CliRunner

from souverain import roles
from souverain.cli import app
from souverain.config import ConfigError, load_settings

with warnings.catch_warnings():  # starlette nudges towards httpx2; the project has httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_the_default_is_every_role_as_the_all_in_one() -> None:
    settings = load_settings(environ={})
    assert settings.server.roles == "api,network,background"
    roles.apply(settings)
    assert settings.network.dataplane is True
    assert settings.compute.local_host is True


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("background, API", "api,background"),
        ("network", "network"),
        ("background,background", "background"),
    ],
)
def test_roles_are_read_in_one_spelling(given: str, kept: str) -> None:
    settings = load_settings(environ={"SOUVERAIN_SERVER__ROLES": given})
    assert settings.server.roles == kept


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("host", "unknown role(s) 'host'; the roles are api, network, background"),
        ("api,compute", "unknown role(s) 'compute'"),
        ("", "name at least one role of api, network, background"),
        (" , ", "name at least one role of api, network, background"),
    ],
)
def test_an_unknown_role_is_refused_naming_the_valid_ones(given: str, said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"SOUVERAIN_SERVER__ROLES": given})
    assert "server.roles" in str(refused.value)
    assert said in str(refused.value)


def test_host_is_pointed_at_the_agent() -> None:
    with pytest.raises(ValueError, match="souverain agent"):
        roles.parse("host")


def test_serve_refuses_an_unknown_role_before_starting(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--data-dir", str(tmp_path), "--roles", "api,dns"], env={}
    )
    assert result.exit_code == 2
    assert "unknown role(s) 'dns'" in result.output
    assert "api, network, background" in result.output


@pytest.mark.parametrize(
    ("named", "dataplane", "local_host"),
    [
        ("api", False, False),
        ("background", False, False),
        ("api,background", False, False),
        ("network", True, False),
        ("network,background", True, False),
        ("api,network", True, True),
    ],
)
def test_a_node_runs_no_data_plane_without_network_and_no_guests_without_api_and_network(
    named: str, dataplane: bool, local_host: bool
) -> None:
    settings = load_settings(environ={"SOUVERAIN_SERVER__ROLES": named})
    roles.apply(settings)
    assert settings.network.dataplane is dataplane
    assert settings.compute.local_host is local_host


def test_a_node_without_api_answers_its_health_and_nothing_else() -> None:
    settings = load_settings(environ={"SOUVERAIN_SERVER__ROLES": "background"})
    client = TestClient(roles.health_app(settings, lambda: ["b-lease", "a-lease"]))
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "roles": ["background"],
        "leases": ["a-lease", "b-lease"],
    }
    for method, path in (("GET", "/compute/v2.1/servers"), ("POST", "/identity/v3/auth/tokens")):
        refused = client.request(method, path)
        assert refused.status_code == 404
        assert "runs background, not the APIs" in refused.json()["error"]["message"]
