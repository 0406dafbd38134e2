"""The S3 REST API: requests in S3's wire shapes to service calls, results back to XML.

`dispatch` is the ASGI application (decoding, SigV4, routing); `wire` the request,
reply and body types every handler shares; `conditions` the conditional and
ranged-read rules as pure functions; `cors` the cross-origin answers; the
handlers by resource: `buckets` (configuration), `listing`, `objects`, `multipart`.
"""

from souverain.objectstore.api.dispatch import S3App

__all__ = ["S3App"]
