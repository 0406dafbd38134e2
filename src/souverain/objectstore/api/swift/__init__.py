"""The Swift v1 API over the object store: `app` routes and decides who calls; `account`,
`container` and `objects` handle each level; `transfer` moves bytes; `wire` and
`listing` hold Swift's wire shapes."""

from souverain.objectstore.api.swift.app import body_limit_for, build_app
from souverain.objectstore.api.swift.wire import render_error

__all__ = ["body_limit_for", "build_app", "render_error"]
