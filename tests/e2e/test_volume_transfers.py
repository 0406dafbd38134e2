"""Block storage administration as customers and operators do it with the `openstack` CLI:
a volume handed from one project to another, a private volume type given to a project,
QoS specs associated with it."""

from __future__ import annotations

from .conftest import Cloud, unique


def test_cli_transfers_a_volume_between_projects(cloud: Cloud) -> None:
    giver, taker = cloud.make_tenant("giver"), cloud.make_tenant("taker")
    mine, theirs = {"cloud": giver.cloud_name}, {"cloud": taker.cloud_name}
    name = unique("gift")
    volume = cloud.cli_json("volume", "create", "--size", "1", name, **mine)
    request = cloud.cli_json(
        "volume", "transfer", "request", "create", "--name", "to-taker", name, **mine
    )
    assert request["volume_id"] == volume["id"] and request["auth_key"], request
    listed = cloud.cli_json("volume", "transfer", "request", "list", **mine)
    assert [row["ID"] for row in listed] == [request["id"]]
    assert cloud.cli_json("volume", "transfer", "request", "list", **theirs) == []

    refused = cloud.cli_fails(
        "volume", "transfer", "request", "accept", "--auth-key", "0" * 16, request["id"], **theirs
    )
    assert "auth key" in refused.lower(), refused
    cloud.cli_ok(
        "volume",
        "transfer",
        "request",
        "accept",
        "--auth-key",
        request["auth_key"],
        request["id"],
        **theirs,
    )
    taken = cloud.cli_json("volume", "show", volume["id"], **theirs)
    assert taken["status"] == "available"
    assert cloud.cli_json("volume", "list", **mine) == []
    cloud.cli_ok("volume", "delete", volume["id"], **theirs)


def test_cli_private_volume_type_with_project_access_and_qos(cloud: Cloud) -> None:
    user = cloud.make_tenant("typed")
    on = {"cloud": user.cloud_name}
    type_name = unique("private")
    cloud.cli_ok("volume", "type", "create", "--private", type_name)
    assert type_name not in {row["Name"] for row in cloud.cli_json("volume", "type", "list", **on)}
    cloud.cli_ok("volume", "type", "set", "--project", user.project_name, type_name)
    assert type_name in {row["Name"] for row in cloud.cli_json("volume", "type", "list", **on)}
    volume = cloud.cli_json("volume", "create", "--size", "1", "--type", type_name, "v", **on)
    assert volume["type"] == type_name

    qos_name = unique("qos")
    qos = cloud.cli_json(
        "volume", "qos", "create", "--consumer", "front-end", "--property", "read_iops_sec=100",
        qos_name,
    )  # fmt: skip
    assert qos["consumer"] == "front-end"
    cloud.cli_ok("volume", "qos", "associate", qos_name, type_name)
    shown = cloud.cli_json("volume", "qos", "show", qos_name)
    assert type_name in str(shown["associations"]), shown
    cloud.cli_ok("volume", "qos", "disassociate", "--volume-type", type_name, qos_name)
    cloud.cli_ok("volume", "qos", "delete", qos_name)

    cloud.cli_ok("volume", "delete", volume["id"], **on)
    cloud.cli_ok("volume", "type", "unset", "--project", user.project_name, type_name)
    assert type_name not in {row["Name"] for row in cloud.cli_json("volume", "type", "list", **on)}
    cloud.cli_ok("volume", "type", "delete", type_name)
