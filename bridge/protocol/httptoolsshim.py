"""The HTTP/1.1 parser's seam: what bridge learns from httptools (llhttp) only from the text
or the chaining of its exceptions, in one place.

Written against httptools 0.9.0 (llhttp 9). No private name is touched; `pyproject.toml`
bounds httptools from above and tests/unit/test_library_versions.py fails when the installed
version is outside the range, because the reasons matched here are llhttp's wording, which a
release may change without notice (a changed one falls back to a plain 400, not an error).
"""

from __future__ import annotations

import httptools


def callback_error(exc: httptools.HttpParserCallbackError) -> BaseException | None:
    """The exception one of our parser callbacks raised: httptools reports it as
    HttpParserCallbackError, with the original only as the implicit context."""
    return exc.__context__


def upgrade_offset(exc: httptools.HttpParserUpgrade) -> int:
    """Where, in the bytes last fed, the upgraded protocol's bytes start: httptools passes the
    offset as the exception's only argument."""
    return int(exc.args[0])


def reason(exc: httptools.HttpParserError) -> str:
    """llhttp's reason for refusing the bytes (may be empty)."""
    return str(exc)


def is_bad_version(exc: httptools.HttpParserError) -> bool:
    """The request line's HTTP version is not one llhttp knows."""
    return str(exc) == "Invalid HTTP version"


def is_bad_transfer_encoding(exc: httptools.HttpParserError) -> bool:
    """A Transfer-Encoding llhttp cannot frame (a coding after `chunked`, or none)."""
    return str(exc) == "Request has invalid `Transfer-Encoding`"


def is_obs_fold(exc: httptools.HttpParserError) -> bool:
    """A header line continued on the next (obsolete line folding, RFC 9112 §5.2)."""
    return str(exc).startswith("Unexpected whitespace after header value")
