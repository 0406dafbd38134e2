"""Swift's static web sites (`staticweb`): a readable container answered as a web server.

A GET or HEAD without a token, or with `X-Web-Mode: true`, on a container whose metadata
names `Web-Index`, `Web-Listings` or `Web-Error`, is served as pages: the index object of
a "directory", an HTML listing where there is none (styled by `Web-Listings-CSS`), the
`<status><Web-Error>` object for a 404 (and a listing's 401), a 301 to the directory's
trailing slash. Every object read goes through the object handlers with the caller's own
rights: a site is served only to whom the container's ACL lets read it (`.r:*` for the
public), and nothing here reads past them. Every name put in a page is HTML-escaped and
URL-quoted: object names are the uploader's, and the page is the visitor's.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import html
import urllib.parse
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.objectstore.api.swift.access import Caller, may_read
from souverain.objectstore.api.swift.container import ContainerHandlers
from souverain.objectstore.api.swift.listing import MAX_LIMIT, ListingParams
from souverain.objectstore.api.swift.objects import ObjectHandlers
from souverain.objectstore.api.swift.wire import HTML, SwiftError, error_response
from souverain.objectstore.records import BucketInfo, ObjectInfo
from souverain.objectstore.swift.metadata import ContainerMeta, SwiftMetadata

TRUE = ("true", "1", "yes", "on", "t", "y")
DIRECTORY_TYPE = "application/directory"
DEFAULT_STYLE = (
    '  <style type="text/css">\n'
    "   h1 {font-size: 1em; font-weight: bold;}\n"
    "   th {text-align: left; padding: 0px 1em 0px 1em;}\n"
    "   td {padding: 0px 1em 0px 1em;}\n"
    "   a {text-decoration: none;}\n"
    "  </style>\n"
)


def _listing_policy(style: str) -> str:
    """What a listing page may load: its default inline style (by hash) or a style sheet,
    nothing else; no script, no frame around it, no form."""
    inline = style.split(">", 1)[1].rsplit("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'self' https: 'sha256-{digest}'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


LISTING_CSP = _listing_policy(DEFAULT_STYLE)
LISTINGS_OFF = (
    "Web listings are off for this container; its owner turns them on with "
    "X-Container-Meta-Web-Listings: true."
)


@dataclass(frozen=True)
class Site:
    """What a container's `Web-*` metadata asks for."""

    index: str
    error: str
    listings: bool
    css: str
    directory_type: str
    label: str  # shown instead of the account's path in a listing's title

    @property
    def serves(self) -> bool:
        return bool(self.index or self.listings or self.error)


def site_of(meta: ContainerMeta) -> Site:
    get = meta.meta.get
    return Site(
        index=(get("web-index") or "").strip(),
        error=(get("web-error") or "").strip(),
        listings=(get("web-listings") or "").strip().lower() in TRUE,
        css=(get("web-listings-css") or "").strip(),
        directory_type=(get("web-directory-type") or "").strip() or DIRECTORY_TYPE,
        label=(get("web-listings-label") or "").strip(),
    )


def web_mode(request: Request) -> bool:
    """Anonymous reads, and authenticated ones that ask with `X-Web-Mode: true`; a temp URL
    is an API call and stays one."""
    if request.method not in ("GET", "HEAD") or "temp_url_sig" in request.query_params:
        return False
    if not request.headers.get("x-auth-token"):
        return True
    return asked_web_mode(request)


def asked_web_mode(request: Request) -> bool:
    return request.headers.get("x-web-mode", "").strip().lower() in TRUE


@dataclass(frozen=True)
class Place:
    """The container a web request is in, as the caller may see it."""

    name: str
    bucket: BucketInfo
    meta: ContainerMeta
    site: Site


class StaticWeb:
    def __init__(
        self, containers: ContainerHandlers, objects: ObjectHandlers, metadata: SwiftMetadata
    ) -> None:
        self.containers = containers
        self.objects = objects
        self.metadata = metadata

    async def _place(self, caller: Caller, name: str) -> Place | None:
        """The container, when it is a site this caller may read; None: the API answers."""
        bucket = await asyncio.to_thread(self.containers.bucket, caller, name)
        meta = await asyncio.to_thread(self.metadata.container, bucket.id)
        site = site_of(meta)
        if not may_read(caller, meta):
            return None
        return Place(name, bucket, meta, site)

    async def container(self, request: Request, caller: Caller, name: str) -> Response | None:
        """The container's root: its index, or its listing; None when it is no site."""
        place = await self._place(caller, name)
        if place is None:  # no site, or none for this caller: the API answers (or refuses)
            return None
        if not (place.site.index or place.site.listings):
            if asked_web_mode(request):
                raise SwiftError(404, "This container serves no index and no listing.")
            return None
        if not request.url.path.endswith("/"):
            return redirect_with_slash(request)
        if place.site.index:
            found = await self._live(place, place.site.index)
            if found is not None:
                return await self.objects.show(request, caller, name, place.site.index)
        return await self._listing(request, caller, place, "")

    async def object(
        self, request: Request, caller: Caller, container: str, key: str
    ) -> Response | None:
        """An object, or the "directory" its name stands for; None when it is no site."""
        place = await self._place(caller, container)
        if place is None or not place.site.serves:
            return None
        if await self._live(place, key) is not None:
            return await self.objects.show(request, caller, container, key)
        site = place.site
        if not (site.index or site.listings):
            return await self.error_page(request, caller, place, 404, "The page was not found.")
        directory = key if key.endswith("/") else key + "/"
        if site.index and await self._live(place, directory + site.index) is not None:
            if not key.endswith("/"):
                return redirect_with_slash(request)
            return await self.objects.show(request, caller, container, directory + site.index)
        if key.endswith("/"):
            return await self._listing(request, caller, place, key)
        if await asyncio.to_thread(self._has_children, place, directory):
            return redirect_with_slash(request)
        return await self.error_page(request, caller, place, 404, "The page was not found.")

    async def _live(self, place: Place, key: str) -> ObjectInfo | None:
        """The object, unless it is missing or a directory marker (which is no page)."""
        try:
            obj = await asyncio.to_thread(self.objects.find, place.bucket, key)
        except SwiftError:
            return None
        kind = obj.headers.get("content-type", "").split(";")[0].strip()
        if kind == place.site.directory_type and obj.size <= 1:
            return None
        return obj

    def _has_children(self, place: Place, directory: str) -> bool:
        params = ListingParams(1, "", "", directory, "/", False)
        now = dt.datetime.now(dt.UTC)
        return bool(self.containers.objects(place.bucket, params, now))

    async def _listing(
        self, request: Request, caller: Caller, place: Place, prefix: str
    ) -> Response:
        if not place.site.listings:
            return await self.error_page(request, caller, place, 404, LISTINGS_OFF)
        if not may_read(caller, place.meta, listing=True):
            refusal = caller.refuse()
            return await self.error_page(request, caller, place, refusal.status, refusal.message)
        params = ListingParams(MAX_LIMIT, "", "", prefix, "/", False)
        now = dt.datetime.now(dt.UTC)
        items = await asyncio.to_thread(self.containers.objects, place.bucket, params, now)
        if prefix and not items:
            return await self.error_page(request, caller, place, 404, "The page was not found.")
        title = urllib.parse.unquote(request.url.path)
        if place.site.label:
            title = f"{place.site.label}/{prefix}"
        css = stylesheet_href(place.site.css, prefix)
        body = "" if request.method == "HEAD" else render_listing(title, css, prefix, items)
        return Response(
            body, 200, media_type=HTML, headers={"Content-Security-Policy": LISTING_CSP}
        )

    async def error_page(
        self, request: Request, caller: Caller, place: Place, status: int, message: str
    ) -> Response:
        """The container's `<status><Web-Error>` object with the error's status, or Swift's
        own error page when there is none the caller may read."""
        plain = error_response(SwiftError(status, message), request.method)
        page = f"{status}{place.site.error}"
        if not place.site.error or await self._live(place, page) is None:
            return plain
        bare = Request({**request.scope, "headers": [], "query_string": b""}, request.receive)
        try:
            shown = await self.objects.show(bare, caller, place.name, page)
        except SwiftError:
            return plain
        shown.status_code = status
        return shown


def redirect_with_slash(request: Request) -> Response:
    """301 to the same path with its trailing slash, as a browser expects of a directory."""
    location = urllib.parse.quote(request.url.path) + "/"
    return Response(status_code=301, headers={"Location": location}, media_type=HTML)


def stylesheet_href(css: str, prefix: str) -> str:
    """The style sheet's address as seen from the listed directory: an absolute one as given,
    a relative one from the container's root."""
    if not css:
        return ""
    if css.startswith("/") or "://" in css:
        return css
    return "../" * prefix.count("/") + urllib.parse.quote(css)


def human_size(size: int) -> str:
    """Bytes as 1023, 1Ki, 5Mi, ...: the sizes Swift's listings show."""
    value, unit = float(size), ""
    for suffix in "KMGTPEZY":
        if value < 1024:
            break
        value, unit = round(value / 1024), suffix + "i"
    return f"{int(value)}{unit}"


def _row(classes: str, href: str, label: str, size: str, date: str, ident: str = "") -> str:
    ident = f' id="{ident}"' if ident else ""
    return (
        f'   <tr{ident} class="{classes}">\n'
        f'    <td class="colname"><a href="{href}">{label}</a></td>\n'
        f'    <td class="colsize">{size}</td>\n'
        f'    <td class="coldate">{date}</td>\n'
        "   </tr>\n"
    )


def _link(name: str) -> str:
    """A relative link to a name: every character but `/` quoted (so no `javascript:`)."""
    return html.escape(urllib.parse.quote(name))


def render_listing(title: str, css: str, prefix: str, items: list[dict[str, Any]]) -> str:
    """The HTML page of one directory's listing: sub-directories first, then objects."""
    e = html.escape
    head = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
        '"http://www.w3.org/TR/html4/loose.dtd">\n'
        f"<html>\n <head>\n  <title>Listing of {e(title)}</title>\n"
    )
    style = (
        f'  <link rel="stylesheet" type="text/css" href="{e(css)}" />\n' if css else DEFAULT_STYLE
    )
    rows = [
        " </head>\n <body>\n"
        f'  <h1 id="title">Listing of {e(title)}</h1>\n'
        '  <table id="listing">\n   <tr id="heading">\n'
        '    <th class="colname">Name</th>\n    <th class="colsize">Size</th>\n'
        '    <th class="coldate">Date</th>\n   </tr>\n'
    ]
    if prefix:
        rows.append(_row("item", "../", "../", "&nbsp;", "&nbsp;", ident="parent"))
    for item in items:
        if "subdir" in item:
            sub = item["subdir"][len(prefix) :]
            rows.append(_row("item subdir", _link(sub), e(sub), "&nbsp;", "&nbsp;"))
    for item in items:
        if "name" in item:
            name = item["name"][len(prefix) :]
            kinds = " ".join("type-" + e(t.lower()) for t in item["content_type"].split("/"))
            date = e(str(item["last_modified"]).split(".")[0].replace("T", " "))
            size = human_size(int(item["bytes"]))
            rows.append(_row(f"item {kinds}", _link(name), e(name), size, date))
    rows.append("  </table>\n </body>\n</html>\n")
    return head + style + "".join(rows)
