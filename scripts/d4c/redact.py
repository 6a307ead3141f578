"""Keep secrets out of every output.

Secrets are registered from the environment variables a targets config names
(and a few well-known ones); `redact` replaces each registered value, and URL
userinfo and Authorization-like headers, with `***`. A logging filter applies it
to every record, and the top-level error handler applies it to every message.
"""
from __future__ import annotations

import logging
import os
import re

_SECRETS: set[str] = set()
_WELL_KNOWN = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ZENODO_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "IA_SECRET_KEY",
    "IA_ACCESS_KEY",
)
# A scheme starts where no scheme character precedes it and is at most 32 long: without both, a
# long run of letters (a big log line) costs quadratic time.
_URL_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)[^/@\s]+@")
_AUTH_HEADER = re.compile(
    r"(?i)(authorization|x-amz-security-token|access_token|token)(['\"]?\s*[:=]\s*['\"]?)"
    r"(bearer |token |low |aws4-hmac-sha256 )?[^\s'\",&]+"
)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it would be printed."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def register_env(names: list[str] | tuple[str, ...]) -> None:
    """Register the values of the named environment variables as secrets."""
    for name in names:
        register_secret(os.environ.get(name))


def redact(text: str) -> str:
    """Mask registered secrets, URL credentials and auth headers in `text`."""
    register_env(_WELL_KNOWN)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def install_log_redaction() -> None:
    """Attach the redacting filter to the root logger and all its handlers."""
    root = logging.getLogger()
    flt = RedactingFilter()
    root.addFilter(flt)
    for handler in root.handlers:
        handler.addFilter(flt)
