"""The error tree: every failure a request can meet, with its HTTP status and public code.

    ImageProxyError
    ├── BadRequest (400 bad_request)
    ├── BadSignature (403 bad_signature)
    ├── Forbidden (403 forbidden)
    ├── NotApproved (403 not_approved)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── TooLarge (413 too_large)
    ├── UnsupportedFormat (415 unsupported_format)
    ├── Undecodable (422 undecodable)
    ├── UpstreamError (502 upstream_error)
    ├── Overloaded (503 overloaded, Retry-After)
    │   └── SourceChanged (503 overloaded: the source changed while it was read)
    ├── UpstreamTimeout (504 upstream_timeout)
    └── InternalError (500 internal_error: a bug, logged; never an expected outcome)

Stages raise these; only the edge turns them into responses (see `response.error_response`).
"""

from __future__ import annotations


class ImageProxyError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ImageProxyError):
    status, code = 400, "bad_request"


class BadSignature(ImageProxyError):
    status, code = 403, "bad_signature"


class Forbidden(ImageProxyError):
    status, code = 403, "forbidden"


class NotApproved(ImageProxyError):
    status, code = 403, "not_approved"


class NotFound(ImageProxyError):
    status, code = 404, "not_found"


class MethodNotAllowed(ImageProxyError):
    status, code = 405, "method_not_allowed"


class TooLarge(ImageProxyError):
    status, code = 413, "too_large"


class UnsupportedFormat(ImageProxyError):
    status, code = 415, "unsupported_format"


class Undecodable(ImageProxyError):
    status, code = 422, "undecodable"


class UpstreamError(ImageProxyError):
    status, code = 502, "upstream_error"


class Overloaded(ImageProxyError):
    status, code = 503, "overloaded"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class SourceChanged(Overloaded):
    """The source was rewritten or replaced while it was read: the bytes may be torn or
    belong to another version, so they are refused and never cached. A 503 with
    `Retry-After: 1` (SPEC §5 has no code of its own for it): the condition is transient,
    and a retry stats the file again and reads its new version whole."""


class UpstreamTimeout(ImageProxyError):
    status, code = 504, "upstream_timeout"


class InternalError(ImageProxyError):
    status, code = 500, "internal_error"


class ConfigError(ValueError):
    """Invalid configuration; the message starts with the dotted key at fault."""
