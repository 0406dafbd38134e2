"""A snapshot of an attached (in-use) volume through the real `openstack` CLI.

Cinder's rule, which the server follows: below microversion 3.66 an in-use volume is
snapshotted only with `force: true`; from 3.66 it needs no flag, and a false `force` is
refused. `openstack --os-volume-api-version 3.65 volume snapshot create --force` sends
force=true at 3.65; from 3.66 the CLI leaves `--force` out and sends no flag.
"""

from __future__ import annotations

from .conftest import Cloud, unique


def test_cli_snapshots_an_in_use_volume_as_cinder_does(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("snap-in-use")
    on = {"cloud": tenant.cloud_name}
    name = unique("attached")
    volume = cloud.cli_json("volume", "create", "--size", "1", name, **on)
    # an admin marks it attached, as the compute service does when a server holds it
    cloud.cli_ok("volume", "set", "--state", "in-use", volume["id"])
    assert cloud.cli_json("volume", "show", volume["id"], **on)["status"] == "in-use"

    made: list[str] = []
    for version, flags in (("3.65", ["--force"]), ("3.66", ["--force"]), ("3.70", [])):
        snap_name = unique("snap")
        snap = cloud.cli_json(
            "--os-volume-api-version",
            version,
            "volume",
            "snapshot",
            "create",
            *flags,
            "--volume",
            name,
            snap_name,
            **on,
        )
        assert snap["status"] == "available" and snap["volume_id"] == volume["id"], snap
        made.append(snap["id"])

    # below 3.66 and without --force: refused, and nothing is left behind
    error = cloud.cli_fails(
        "--os-volume-api-version",
        "3.65",
        "volume",
        "snapshot",
        "create",
        "--volume",
        name,
        unique("refused"),
        **on,
    )
    assert "force" in error and "3.66" in error, error
    listed = cloud.cli_json("volume", "snapshot", "list", **on)
    assert sorted(row["ID"] for row in listed) == sorted(made)
