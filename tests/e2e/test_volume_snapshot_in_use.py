"""A snapshot of an attached (in-use) volume through the real `openstack` CLI.

From microversion 3.66 an in-use volume needs no flag. The CLI a customer types with no
version, `openstack volume snapshot create --force`, sees that the cloud offers 3.66, leaves
`--force` out, and openstacksdk sends the call at 3.65: Cinder would refuse it, Souverain
takes it (only an explicit force=false below 3.66 is refused; tests/api covers that).
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
    cases = ((None, ["--force"]), ("3.65", ["--force"]), ("3.66", ["--force"]), ("3.70", []))
    for version, flags in cases:
        snap_name = unique("snap")
        pinned = ["--os-volume-api-version", version] if version else []
        snap = cloud.cli_json(
            *pinned,
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

    listed = cloud.cli_json("volume", "snapshot", "list", **on)
    assert sorted(row["ID"] for row in listed) == sorted(made)
