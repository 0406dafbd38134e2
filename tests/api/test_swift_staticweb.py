"""Swift static web sites: index pages, HTML listings (escaped, whatever the names),
error pages, redirects to a directory's slash, `X-Web-Mode`, and only for who may read."""

from __future__ import annotations

import re

import pytest

from .support import Cloud, Member
from .test_swift_api import Swift

ANON = ""  # the Swift helper sends no token


@pytest.fixture
def owner(cloud: Cloud) -> Member:
    return cloud.member("member")


@pytest.fixture
def site(owner: Member, cloud: Cloud) -> Swift:
    """A public container with an index, listings, an error page and a few pages."""
    swift = Swift(cloud, owner)
    meta = {
        "X-Container-Read": ".r:*,.rlistings",
        "X-Container-Meta-Web-Index": "index.html",
        "X-Container-Meta-Web-Listings": "true",
        "X-Container-Meta-Web-Error": "error.html",
    }
    assert swift("PUT", "www", headers=meta).status_code == 201
    pages = {
        "index.html": b"<p>home</p>",
        "404error.html": b"<p>lost</p>",
        "docs/index.html": b"<p>docs</p>",
        "files/a.txt": b"a",
        "files/deep/b.txt": b"bb",
        "style.css": b"h1 {}",
    }
    for name, body in pages.items():
        put = swift("PUT", f"www/{name}", body, headers={"Content-Type": "text/html"})
        assert put.status_code == 201, put.text
    return swift


def test_the_container_root_serves_its_index_to_anyone(site: Swift) -> None:
    page = site("GET", "www/", token=ANON)
    assert page.status_code == 200
    assert page.content == b"<p>home</p>"
    assert page.headers["content-type"].startswith("text/html")
    assert site("HEAD", "www/", token=ANON).status_code == 200


def test_a_directory_without_its_slash_is_redirected(site: Swift) -> None:
    for path in ("www", "www/docs", "www/files"):
        moved = site("GET", path, token=ANON, follow_redirects=False)
        assert moved.status_code == 301, path
        assert moved.headers["location"] == f"{site.base}/{path}/"
    assert site("GET", "www/docs/", token=ANON).content == b"<p>docs</p>"


def test_a_directory_without_index_is_listed_in_html(site: Swift) -> None:
    page = site("GET", "www/files/", token=ANON)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    head = site("HEAD", "www/files/", token=ANON)
    assert head.status_code == 200 and head.content == b""
    text = page.text
    assert f"Listing of {site.base}/www/files/" in text
    assert '<a href="../">../</a>' in text
    assert '<a href="deep/">deep/</a>' in text
    assert '<a href="a.txt">a.txt</a>' in text
    assert '<tr class="item type-text type-html">' in text
    assert "<style" in text  # no style sheet named: the default style


def test_listing_links_the_named_stylesheet_from_the_root(site: Swift) -> None:
    css = {"X-Container-Meta-Web-Listings-CSS": "style.css"}
    assert site("POST", "www", headers=css).status_code == 204
    text = site("GET", "www/files/deep/", token=ANON).text
    assert '<link rel="stylesheet" type="text/css" href="../../style.css" />' in text
    absolute = {"X-Container-Meta-Web-Listings-CSS": "https://cdn.example/s.css"}
    assert site("POST", "www", headers=absolute).status_code == 204
    assert 'href="https://cdn.example/s.css"' in site("GET", "www/files/", token=ANON).text


def test_a_listing_label_replaces_the_account_path_in_the_title(site: Swift) -> None:
    label = {"X-Container-Meta-Web-Listings-Label": "<Docs>"}
    assert site("POST", "www", headers=label).status_code == 204
    text = site("GET", "www/files/", token=ANON).text
    assert "<title>Listing of &lt;Docs&gt;/files/</title>" in text
    assert "AUTH_" not in text


def test_a_missing_page_is_the_error_page_with_a_404(site: Swift) -> None:
    missing = site("GET", "www/nothing.html", token=ANON)
    assert missing.status_code == 404
    assert missing.content == b"<p>lost</p>"
    assert site("GET", "www/nowhere/", token=ANON).status_code == 404
    assert site("GET", "www/nowhere/", token=ANON).content == b"<p>lost</p>"
    assert site("DELETE", "www/404error.html").status_code == 204
    plain = site("GET", "www/nothing.html", token=ANON)
    assert plain.status_code == 404 and b"lost" not in plain.content


def test_listings_off_is_a_404_and_the_index_still_serves(site: Swift) -> None:
    off = {"X-Remove-Container-Meta-Web-Listings": "x"}
    assert site("POST", "www", headers=off).status_code == 204
    assert site("GET", "www/files/", token=ANON).status_code == 404
    assert site("GET", "www/", token=ANON).content == b"<p>home</p>"


def test_the_401_page_serves_when_the_public_may_read_but_not_list(site: Swift) -> None:
    acl = {"X-Container-Read": ".r:*", "X-Container-Meta-Web-Index": ""}
    assert site("POST", "www", headers=acl).status_code == 204
    assert site("PUT", "www/401error.html", b"<p>who?</p>").status_code == 201
    refused = site("GET", "www/files/", token=ANON)
    assert refused.status_code == 401
    assert refused.content == b"<p>who?</p>"
    assert site("GET", "www/files/a.txt", token=ANON).content == b"a"


def test_hostile_names_are_escaped_in_listings(site: Swift) -> None:
    names = [
        '<script>alert("x")</script>.html',
        "a&b\"c'd.txt",
        "javascript:alert(1)",
        "<img src=x onerror=alert(1)>/x.txt",
    ]
    for name in names:
        assert site("PUT", f"www/files/{name}", b"x").status_code == 201, name
    hostile = {"Content-Type": 'text/html"><script>alert(2)</script>'}
    assert site("PUT", "www/files/typed.txt", b"x", headers=hostile).status_code == 201
    text = site("GET", "www/files/", token=ANON).text
    assert "<script>" not in text and "<img" not in text
    assert ">&lt;script&gt;alert(&quot;x&quot;)&lt;/</a>" in text  # a "directory" up to its /
    assert "a&amp;b&quot;c&#x27;d.txt" in text
    assert 'href="javascript:' not in text
    assert 'href="javascript%3Aalert%281%29"' in text
    assert site("PUT", "www/files/café/ü.txt", b"x").status_code == 201
    text = site("GET", "www/files/", token=ANON).text
    assert '<a href="caf%C3%A9/">café/</a>' in text
    inner = site("GET", "www/files/café/", token=ANON).text
    assert '<a href="%C3%BC.txt">ü.txt</a>' in inner
    hrefs = re.findall(r'href="([^"]*)"', text)
    assert all("<" not in h and ">" not in h and " " not in h for h in hrefs), hrefs


def test_an_authenticated_caller_gets_the_api_unless_asking_for_web_mode(site: Swift) -> None:
    listing = site("GET", "www")  # the owner's token: Swift's API, not the site
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/plain")
    assert site("GET", "www/files/").status_code == 404  # an object of that name
    web = site("GET", "www/files/", headers={"X-Web-Mode": "true"})
    assert web.status_code == 200 and "Listing of" in web.text
    moved = site("GET", "www", headers={"X-Web-Mode": "true"}, follow_redirects=False)
    assert moved.status_code == 301


def test_a_private_container_is_no_site_for_strangers(cloud: Cloud, site: Swift) -> None:
    assert site("POST", "www", headers={"X-Remove-Container-Read": "x"}).status_code == 204
    for path in ("www", "www/", "www/files/", "www/index.html", "www/nothing"):
        refused = site("GET", path, token=ANON, follow_redirects=False)
        assert refused.status_code == 401, path
        assert b"home" not in refused.content and b"lost" not in refused.content
    other = cloud.member("member").token
    web = {"X-Web-Mode": "true"}
    refused = site("GET", "www/files/", token=other, headers=web, follow_redirects=False)
    assert refused.status_code == 403
    assert "Listing of" not in refused.text


def test_a_container_without_web_metadata_keeps_the_api(site: Swift) -> None:
    plain = {"X-Container-Read": ".r:*,.rlistings"}
    assert site("PUT", "raw", headers=plain).status_code == 201
    assert site("PUT", "raw/a/b.txt", b"b").status_code == 201
    listing = site("GET", "raw", token=ANON)
    assert listing.status_code == 200 and listing.text == "a/b.txt\n"
    assert site("GET", "raw/a/", token=ANON).status_code == 404
    asked = site("GET", "raw", headers={"X-Web-Mode": "true"})
    assert asked.status_code == 404


def test_a_directory_marker_is_no_page(site: Swift) -> None:
    marker = {"Content-Type": "application/directory"}
    assert site("PUT", "www/files/deep", b"", headers=marker).status_code == 201
    moved = site("GET", "www/files/deep", token=ANON, follow_redirects=False)
    assert moved.status_code == 301


def test_staticweb_is_listed_in_info(cloud: Cloud) -> None:
    assert "staticweb" in cloud.client.get("/object-storage/info").json()


def test_web_mode_writes_nothing_and_other_methods_keep_the_api(site: Swift) -> None:
    assert site("PUT", "www/new.html", b"x", token=ANON).status_code == 401
    assert site("DELETE", "www/index.html", token=ANON).status_code == 401
    assert site("POST", "www", token=ANON, headers={"X-Container-Read": ""}).status_code == 401
    assert site("GET", "www/index.html", token=ANON).content == b"<p>home</p>"
