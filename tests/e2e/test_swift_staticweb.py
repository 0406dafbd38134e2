"""A static web site published with the `swift` CLI and visited with plain HTTP, no token:
`swift post -r '.r:*' -m 'web-index:index.html'`, as Swift's own documentation shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CLI_TIMEOUT, REGION, Cloud, child_env, unique

pytestmark = pytest.mark.e2e

SWIFT = Path(sys.executable).parent / "swift"
HOSTILE = '<img src=x onerror="alert(1)">&.txt'


def test_a_site_published_with_the_swift_cli_is_served_to_anonymous_visitors(
    cloud: Cloud, tmp_path: Path
) -> None:
    assert SWIFT.exists(), f"{SWIFT} is missing: `make install` installs python-swiftclient"
    tenant = cloud.make_tenant("staticweb")
    env = child_env(
        OS_AUTH_URL=f"{cloud.auth_url}/v3",
        OS_IDENTITY_API_VERSION="3",
        OS_USERNAME=tenant.user_name,
        OS_PASSWORD=tenant.password,
        OS_PROJECT_NAME=tenant.project_name,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME=REGION,
    )

    def swift(*args: str) -> str:
        result = subprocess.run(
            [str(SWIFT), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert result.returncode == 0, f"swift {' '.join(args)}\n{result.stderr}"
        return result.stdout

    site = unique("site")
    (tmp_path / "index.html").write_text("<h1>welcome</h1>")
    (tmp_path / "404error.html").write_text("<h1>not here</h1>")
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog" / "post.html").write_text("<p>post</p>")
    (tmp_path / "hostile.txt").write_text("x")
    swift("upload", site, "index.html", "404error.html", "blog/post.html")
    swift("upload", "--object-name", f"blog/{HOSTILE}", site, "hostile.txt")
    swift("post", "-r", ".r:*,.rlistings", site)
    swift("post", "-m", "web-index:index.html", "-m", "web-error:error.html", site)
    swift("post", "-m", "web-listings:true", "-m", "web-listings-css:style.css", site)
    assert "Meta Web-Index: index.html" in swift("stat", site)

    url = f"{cloud.base_url}/object-storage/v1/AUTH_{tenant.project_id}/{site}"
    with httpx.Client(timeout=30) as visitor:
        moved = visitor.get(url)
        assert moved.status_code == 301
        assert moved.headers["location"].endswith(f"/AUTH_{tenant.project_id}/{site}/")
        home = visitor.get(url, follow_redirects=True)
        assert home.status_code == 200 and home.text == "<h1>welcome</h1>"
        listing = visitor.get(f"{url}/blog/")
        assert listing.status_code == 200
        assert listing.headers["content-type"].startswith("text/html")
        assert '<a href="post.html">post.html</a>' in listing.text
        assert 'href="../style.css"' in listing.text
        assert "<img" not in listing.text
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;.txt" in listing.text
        missing = visitor.get(f"{url}/nothing.html")
        assert missing.status_code == 404 and missing.text == "<h1>not here</h1>"
        assert visitor.put(f"{url}/blog/new.html", content=b"x").status_code == 401

    swift("post", "-r", "", site)  # private again: no more site for strangers
    with httpx.Client(timeout=30) as visitor:
        assert visitor.get(f"{url}/").status_code == 401
        assert visitor.get(f"{url}/blog/").status_code == 401
    swift("delete", site)
