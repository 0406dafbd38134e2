"""Swift's part of the RBAC matrix: the paths its templates take, and the containers whose
ACLs deliberately let callers from outside the account in.

A Swift account is a project: its own readers and members are held to the policy table
like any OpenStack API. Anyone else (another project's member, the account member's
unscoped or domain-scoped token) acts only as a container's ACL allows. The matrix calls
every container and object route on three containers of project A:

- `rbac-private`: no ACL, so outsiders are refused everything;
- `rbac-public`: `.r:*,.rlistings`, so anyone reads it and lists it, and writes nothing;
- `rbac-shared`: read and write ACLs naming project B, so B's member reads it and writes
  its objects, and still cannot change, create or delete the container itself.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from typing import Any

PREFIX = "/object-storage/"
READS = ("GET", "HEAD")
OBJECT = "obj"
# the container, and what its ACL grants outsiders
CONTAINERS = {"rbac-private": "", "rbac-public": "public", "rbac-shared": "shared"}
# every container is a static web site too: its pages are held to the same ACLs
WEB = {
    "X-Container-Meta-Web-Index": "index.html",
    "X-Container-Meta-Web-Listings": "true",
    "X-Container-Meta-Web-Error": "error.html",
}
Headers = tuple[tuple[str, str], ...]
WEB_MODE: Headers = (("X-Web-Mode", "true"),)


def is_swift(template: str) -> bool:
    return template.startswith(PREFIX)


def make_containers(send: Callable[..., Any], account_path: str, other_project: str) -> None:
    """The three containers, one object in each, made by the account's member."""
    acls = {
        "rbac-private": {},
        "rbac-public": {"X-Container-Read": ".r:*,.rlistings"},
        "rbac-shared": {
            "X-Container-Read": f"{other_project}:*",
            "X-Container-Write": f"{other_project}:*",
        },
    }
    for name, headers in acls.items():
        made = send("PUT", f"{account_path}/{name}", {**headers, **WEB})
        assert made.status_code == 201, made.text
        put = send("PUT", f"{account_path}/{name}/{OBJECT}", {}, b"A's object")
        assert put.status_code == 201, put.text
        page = send("PUT", f"{account_path}/{name}/404error.html", {}, b"A's error page")
        assert page.status_code == 201, page.text


def calls(method: str, template: str, project_id: str) -> list[tuple[str, str, Headers]]:
    """(path, what its container grants outsiders, extra headers) for each container the
    template names; reads once more as a static web site (`X-Web-Mode: true`)."""
    path = template.replace("{account}", f"AUTH_{project_id}").replace("{obj:path}", OBJECT)
    if "{container}" not in path:
        return [(path, "", ())]
    modes: list[Headers] = [(), WEB_MODE] if method in READS else [()]
    return [
        (path.replace("{container}", name), grant, mode)
        for name, grant in CONTAINERS.items()
        for mode in modes
    ]


def acl_allows(caller: str, method: str, template: str, grant: str) -> bool:
    """What the container's ACL lets a caller from outside the account do."""
    if grant == "public":
        return method in READS
    if grant == "shared" and caller == "other":
        return method in READS or "{obj:path}" in template
    return False


def owns_account(ctx_project: str | None, roles: frozenset[str], project_id: str) -> bool:
    """The account's own people, and the cloud's admin (Swift's reseller): held to the table."""
    return ctx_project == project_id or bool({"admin", "ResellerAdmin"} & roles)


def refusal_names(body: str, action: str) -> bool:
    """A Swift refusal is a short HTML page; it names the action refused."""
    return body.startswith("<html>") and action in body


def extra_headers(method: str, path: str) -> dict[str, str]:
    """A COPY names its destination: beside the source, in the same container."""
    if method != "COPY":
        return {}
    container = path[len(PREFIX) :].split("/")[2]
    return {"Destination": f"{container}/{OBJECT}-copy"}


def tar_of(names: list[str]) -> bytes:
    """An uncompressed tar archive holding one small file under each name."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 7
            archive.addfile(info, io.BytesIO(b"planted"))
    return out.getvalue()


def refused_every_item(response: Any) -> bool:
    """A refusal of the whole request, or Swift's per-item answer refusing every item."""
    if response.status_code in (401, 403):
        return True
    if response.status_code != 200:
        return False
    outcome = response.json()
    done = outcome.get("Number Deleted", 0) + outcome.get("Number Files Created", 0)
    errors = outcome["Errors"]
    return done == 0 and bool(errors) and all(s[:3] in ("401", "403") for _, s in errors)


SECRET = b"A's object"  # what every container's `obj` holds: never shown to an outsider


def indirect_doors(private: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """Ways B, who may write `rbac-shared`, might reach `rbac-private` indirectly:
    (method, path under the account, headers, body). None may answer with A's bytes."""
    target = f"{private}/{OBJECT}"
    slo = f'[{{"path": "/{target}"}}]'.encode()
    return [
        ("PUT", "rbac-shared/link", {"X-Symlink-Target": target}, b""),
        ("GET", "rbac-shared/link", {}, b""),
        ("PUT", "rbac-shared/dlo", {"X-Object-Manifest": f"{private}/o"}, b""),
        ("GET", "rbac-shared/dlo", {}, b""),
        ("PUT", "rbac-shared/slo?multipart-manifest=put", {}, slo),
        ("GET", "rbac-shared/slo", {}, b""),
        ("PUT", "rbac-shared/copied", {"X-Copy-From": target}, b""),
        ("GET", "rbac-shared/copied", {}, b""),
        ("COPY", target, {"Destination": "rbac-shared/copied"}, b""),
        ("GET", "rbac-shared/copied", {}, b""),
    ]


def forged_doors(private: str, expires: int) -> list[tuple[str, str, dict[str, str], bytes]]:
    """What anyone might try without a token: a temp URL or a form with a made-up signature."""
    sig = "0" * 40
    form = (
        b"--x\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\n" + sig.encode()
        + b"\r\n--x\r\nContent-Disposition: form-data; name=\"expires\"\r\n\r\n"
        + str(expires).encode()
        + b"\r\n--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
        + b"planted\r\n--x--\r\n"
    )  # fmt: skip
    query = f"temp_url_sig={sig}&temp_url_expires={expires}"
    return [
        ("GET", f"{private}/{OBJECT}?{query}", {}, b""),
        ("PUT", f"{private}/planted?{query}", {}, b"planted"),
        ("POST", f"{private}/", {"Content-Type": "multipart/form-data; boundary=x"}, form),
        ("GET", "rbac-public/to-private", {}, b""),  # A's own symlink out of the public one
    ]
