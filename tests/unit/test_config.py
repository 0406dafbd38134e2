"""Settings: sources in order, validation naming the bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from souverain.config import ConfigError, load_settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.region == "fr-1"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("souverain.db")


def test_file_then_env_then_flags_each_win_over_the_one_before(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[server]\nport = 9000\nregion = "fr-2"\n[identity]\nbcrypt_rounds = 10\n')
    env = {"SOUVERAIN_SERVER__PORT": "9100", "SOUVERAIN_IDENTITY__BCRYPT_ROUNDS": "11"}
    settings = load_settings(config, environ=env, overrides={"server": {"port": 9200}})
    assert settings.server.port == 9200
    assert settings.server.region == "fr-2"
    assert settings.identity.bcrypt_rounds == 11


def test_config_file_named_by_env_is_read(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[server]\nregion = "fr-3"\n')
    assert load_settings(environ={"SOUVERAIN_CONFIG": str(config)}).server.region == "fr-3"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SOUVERAIN_SERVER__PORT": "http"}, "server.port"),
        ({"SOUVERAIN_SERVER__PORT": "70000"}, "server.port"),
        ({"SOUVERAIN_IDENTITY__BCRYPT_ROUNDS": "2"}, "identity.bcrypt_rounds"),
        ({"SOUVERAIN_SERVER__REGION": "fr 1"}, "server.region"),
        ({"SOUVERAIN_SERVER__PUBLIC_URL": "ftp://x"}, "server.public_url"),
        ({"SOUVERAIN_IDENTITY__COLOUR": "blue"}, "identity.colour"),
    ],
)
def test_invalid_setting_is_refused_with_its_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ=env)
    assert repr(named) in str(excinfo.value)


def test_broken_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_admin_password_env_is_not_a_setting() -> None:
    settings = load_settings(environ={"SOUVERAIN_ADMIN_PASSWORD": "x" * 12})
    assert "x" * 12 not in settings.model_dump_json()


def test_wildcard_bind_still_gives_a_reachable_base_url() -> None:
    settings = load_settings(environ={"SOUVERAIN_SERVER__HOST": "0.0.0.0"})
    assert settings.base_url == f"http://127.0.0.1:{settings.server.port}"
