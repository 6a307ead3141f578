"""Lints on sources, outputs and the transform: URLs, paths, hashes, names, entry points."""
from __future__ import annotations

import ast
import hashlib
import ipaddress
import re
import socket
import warnings
from urllib.parse import urlsplit

from d4c.recipe import TABULAR_FORMATS
from d4c.validate.context import SHA256, Context, inside
from d4c.validate.yamlpos import JPath

# Host names that never resolve publicly (RFC 6761, 6762, 8375 and common internal zones).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_LOCAL_SUFFIXES = (".local", ".internal", ".lan", ".home.arpa", ".intranet", ".corp")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal, including the legacy IPv4 forms browsers and curl accept
    (`127.1`, `0x7f.0.0.1`, `2130706433`); parsing only, never DNS."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def url_problem(url: str, allow_loopback: bool) -> tuple[str, str] | None:
    """(lint id, message) for a source URL that must not be used, else None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return ("D4C501", "not a valid URL")
    if parts.username is not None or parts.password is not None:
        return ("D4C502", "URL carries credentials (user:password@); remove them")
    ip = _ip(host)
    loopback = host == "localhost" or host.endswith(".localhost") or bool(ip and ip.is_loopback)
    if loopback and not allow_loopback:
        return ("D4C503", f"URL points at the loopback host {host}")
    if not loopback and (host.endswith(_LOCAL_SUFFIXES) or (ip is not None and (
        ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_unspecified or ip.is_multicast
    ))):
        return ("D4C503", f"URL points at the private or local host {host}")
    if parts.scheme.lower() != "https" and not (loopback and parts.scheme.lower() == "http"):
        return ("D4C501", f"URL scheme is {parts.scheme or 'missing'!s}; use https")
    if not host:
        return ("D4C501", "URL has no host")
    return None


def _file_digest(path: object) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:  # type: ignore[call-overload]
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def check_sources(ctx: Context) -> None:
    seen: set[str] = set()
    for i, src in ctx.items("sources"):
        name = src.get("name")
        if isinstance(name, str):
            if name in seen:
                ctx.add("D4C508", ("sources", i, "name"), f"source name `{name[:60]}` is used twice")
            seen.add(name)
        urls: list[tuple[JPath, object]] = [(("sources", i, "url"), src.get("url"))]
        alternates = src.get("alternate_urls")
        if isinstance(alternates, list):
            urls += [(("sources", i, "alternate_urls", j), u) for j, u in enumerate(alternates)]
        for where, url in urls:
            if isinstance(url, str) and _SCHEME.match(url):  # else the schema reports it
                problem = url_problem(url, ctx.allow_loopback)
                if problem:
                    ctx.add(problem[0], where, problem[1])
        rel = src.get("path")
        if isinstance(rel, str):
            _check_local(ctx, i, rel, src)


def _check_local(ctx: Context, i: int, rel: str, src: dict[str, object]) -> None:
    target = inside(ctx.folder, rel)
    where = ("sources", i, "path")
    if target is None:
        ctx.add("D4C505", where, f"source path `{rel[:80]}` leaves the dataset folder")
    elif not target.is_file():
        ctx.add("D4C506", where, f"source file `{rel[:80]}` does not exist")
    else:
        sha, size = src.get("sha256"), src.get("size")
        actual_size, actual_sha = _file_digest(target)
        if isinstance(sha, str) and SHA256.match(sha) and sha != actual_sha:
            ctx.add("D4C507", ("sources", i, "sha256"), f"{rel[:80]} has sha256 {actual_sha}")
        if isinstance(size, int) and not isinstance(size, bool) and size != actual_size:
            ctx.add("D4C507", ("sources", i, "size"), f"{rel[:80]} is {actual_size} bytes")


def check_outputs(ctx: Context) -> None:
    seen: set[str] = set()
    for i, out in ctx.items("outputs"):
        name = out.get("name")
        if isinstance(name, str):
            if name in seen:
                ctx.add("D4C601", ("outputs", i, "name"), f"output name `{name[:60]}` is used twice")
            seen.add(name)
        fmt = out.get("format")
        if fmt in TABULAR_FORMATS and "sort_by" not in out:
            label = name[:60] if isinstance(name, str) else f"outputs[{i}]"
            ctx.add("D4C603", ("outputs", i), f"{fmt} output `{label}` declares no `sort_by`")


def check_transform(ctx: Context) -> None:
    entry = ctx.text("transform", "python")
    if entry is None or entry.count(":") != 1:
        return  # absent, a command, or malformed (the schema reports it)
    rel, func = entry.split(":")
    where = ("transform", "python")
    target = inside(ctx.folder, rel)
    if target is None or not rel.endswith(".py"):
        ctx.add("D4C604", where, f"`{rel[:80]}` must be a .py file inside the dataset folder")
        return
    if not target.is_file():
        ctx.add("D4C604", where, f"transform file `{rel[:80]}` does not exist")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. are not our findings
            tree = ast.parse(target.read_bytes(), filename=rel)
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        ctx.add("D4C604", where, f"cannot parse `{rel[:80]}`" + (f" (line {line})" if line else ""))
        return
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if func not in defined:
        ctx.add("D4C605", where, f"`{rel[:80]}` defines no top-level function `{func}`")
