"""Version discovery and the headers every response carries."""

from __future__ import annotations

from .support import Cloud, assert_keystone_error


def test_identity_root_answers_300_multiple_choices_with_v3(shared_cloud: Cloud) -> None:
    for path in ("/identity", "/identity/"):
        response = shared_cloud.client.get(path)
        assert response.status_code == 300
        values = response.json()["versions"]["values"]
        assert [v["status"] for v in values] == ["stable"]
        assert values[0]["id"].startswith("v3.")
        assert values[0]["links"][0]["href"].endswith("/identity/v3/")
        assert values[0]["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


def test_v3_document_describes_the_version(shared_cloud: Cloud) -> None:
    for path in ("/identity/v3", "/identity/v3/"):
        response = shared_cloud.client.get(path)
        assert response.status_code == 200
        version = response.json()["version"]
        assert version["id"].startswith("v3.")
        assert version["status"] == "stable"
        assert version["links"][0]["rel"] == "self"


def test_platform_root_lists_identity(shared_cloud: Cloud) -> None:
    services = shared_cloud.client.get("/").json()["services"]
    assert {"type": "identity", "name": "keystone"}.items() <= services[0].items()


def test_every_response_carries_a_unique_request_id(shared_cloud: Cloud) -> None:
    cloud, client = shared_cloud, shared_cloud.client
    responses = [
        client.get("/"),
        client.get("/identity"),
        client.get("/identity/v3"),
        client.get("/nowhere"),
        client.get("/identity/v3/nowhere"),
        cloud.get("/v3/projects"),
        cloud.head("/v3/auth/tokens", headers={"X-Subject-Token": cloud.admin_token}),
        cloud.get("/v3/projects", token="not-a-token"),
        cloud.post("/v3/projects", {"project": {"name": cloud.unique("p")}}),
        cloud.delete("/v3/projects/0123456789abcdef0123456789abcdef"),
        client.post("/identity/v3/auth/tokens", content=b"{"),
        client.request("PUT", "/identity/v3/projects"),
    ]
    ids = [r.headers.get("x-openstack-request-id", "") for r in responses]
    assert all(i.startswith("req-") for i in ids), ids
    assert len(set(ids)) == len(ids), "request ids must be unique"


def test_unknown_path_and_wrong_method_answer_in_keystone_format(shared_cloud: Cloud) -> None:
    assert_keystone_error(shared_cloud.get("/v3/no-such-collection"), 404)
    assert_keystone_error(shared_cloud.client.get("/no-such-service"), 404)
    assert_keystone_error(shared_cloud.put("/v3/projects"), 405)


def test_missing_or_bad_token_answers_401_with_www_authenticate(shared_cloud: Cloud) -> None:
    for token in ("", "garbage", "gAAAAAB" + "A" * 200, "x" * 10_000):
        response = shared_cloud.get("/v3/projects", token=token)
        assert_keystone_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Keystone uri=")


def test_other_methods_on_the_tokens_path_are_405_in_keystone_format(shared_cloud: Cloud) -> None:
    for method in ("PATCH", "PUT"):
        response = shared_cloud.client.request(method, "/identity/v3/auth/tokens")
        assert_keystone_error(response, 405)
    assert_keystone_error(shared_cloud.client.get("/identity/v3/auth/tokens/extra"), 404)
