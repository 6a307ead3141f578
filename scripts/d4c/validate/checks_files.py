"""Lints on sources, outputs and the transform: URLs, paths, hashes, names, entry points."""
from __future__ import annotations

import ast
import hashlib
import ipaddress
import re
import socket
import unicodedata
import warnings
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from d4c.recipe import TABULAR_FORMATS
from d4c.validate.context import SHA256, Context, inside
from d4c.validate.yamlpos import JPath

# Host names that never resolve publicly (RFC 6761, 6762, 8375 and common internal zones).
_LOCAL_SUFFIXES = (".local", ".internal", ".lan", ".home.arpa", ".intranet", ".corp")
# A host name after NFKC: letters (IDN too), digits, `.`, `-`, `_`. Anything else (`\`, `%`,
# spaces) is read differently by different URL parsers, which is how host checks are dodged.
_HOST = re.compile(r"^[\w.-]+$")
# A string is judged as a URL when it starts with `scheme://`, or with `scheme:` for schemes
# that need no `//` (`javascript:`, `data:`, `file:/x`). Leading C0/space is skipped because
# URL parsers strip it too. Plain text ("Statistics Canada", "EPSG:4326") is not a URL.
_URL_SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "tftp", "file", "s3", "gs", "data",
                "javascript", "vbscript", "blob", "ws", "wss", "gopher", "dict", "ldap", "ldaps",
                "smb", "ssh", "git", "jar")
_URL_LIKE = re.compile(r"^[\x00-\x20]*(?:[A-Za-z][A-Za-z0-9+.-]*://|(?:" + "|".join(_URL_SCHEMES) + "):)",
                       re.IGNORECASE)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(host: str) -> _IP | None:
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


def _reached(ip: _IP) -> list[_IP]:
    """The IPv4 addresses an IPv6 literal carries (mapped, compatible, NAT64, 6to4, Teredo):
    those are what the packets reach, so they are what is judged; else the address itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    if any(ip in net for net in _NAT64) or (int(ip) >> 32 == 0 and int(ip) > 1):  # ::a.b.c.d
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return [ip]


def _local(ip: _IP) -> bool:
    return (ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_unspecified
            or ip.is_multicast or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local))


def url_problem(url: str, allow_loopback: bool) -> tuple[str, str] | None:
    """(lint id, message) for a URL that must not be in a recipe, else None. The one rule
    for every URL: sources, alternates, provider and creator pages, any other field."""
    try:
        parts = urlsplit(url)
        # NFKC: fullwidth `１２７.０.０.１` or `ｌｏｃａｌｈｏｓｔ` is what an IDNA-aware client connects to
        host = unicodedata.normalize("NFKC", parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return ("D4C501", "not a valid URL")
    if parts.username is not None or parts.password is not None:
        return ("D4C502", "URL carries credentials (user:password@); remove them")
    ip = _ip(host)
    if "[" in parts.netloc:  # brackets hold IPv6 only; `[v1.x]` (IPvFuture) is for no client to guess
        odd_host = not isinstance(ip, ipaddress.IPv6Address)
    else:
        odd_host = ip is None and not _HOST.match(host)
    if host and odd_host:
        return ("D4C501", f"URL host `{host[:60]}` is not a valid host name")
    reached = _reached(ip) if ip is not None else []
    loopback = host == "localhost" or host.endswith(".localhost") or any(a.is_loopback for a in reached)
    if loopback and not allow_loopback:
        return ("D4C503", f"URL points at the loopback host {host}")
    if not loopback and (host.endswith(_LOCAL_SUFFIXES) or any(_local(a) for a in reached)):
        return ("D4C503", f"URL points at the private or local host {host}")
    if parts.scheme.lower() != "https" and not (loopback and parts.scheme.lower() == "http"):
        return ("D4C501", f"URL scheme is {parts.scheme or 'missing'!s}; use https")
    if not host:
        return ("D4C501", "URL has no host")
    return None


def check_urls(ctx: Context) -> set[JPath]:
    """Every URL-looking string anywhere in the recipe (keys of free-form mappings too)
    follows `url_problem`: metadata URLs end up in STAC, DOI records and catalog pages, and
    `params` reach the transform. Returns the paths reported, so the schema's pattern
    errors on the same values are not reported a second time."""
    flagged: set[JPath] = set()

    def judge(text: str, path: JPath, key: bool) -> None:
        problem = url_problem(text, ctx.allow_loopback) if _URL_LIKE.match(text) else None
        if problem:
            ctx.add(problem[0], path, problem[1], key=key)
            if not key:  # the schema's patterns apply to values only
                flagged.add(path)

    stack: list[tuple[JPath, Any]] = [((), ctx.loaded.data)]
    while stack:  # iterative, so no recursion limit to think about
        path, node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                judge(str(k), (*path, k), key=True)
                stack.append(((*path, k), v))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
        elif isinstance(node, str):
            judge(node, path, key=False)
    return flagged


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
        # the URLs are judged by check_urls, with every other URL in the recipe
        rel = src.get("path")
        if isinstance(rel, str):
            _check_local(ctx, i, rel, src)


def check_sample_sources(ctx: Context) -> None:
    """`sample.sources` against the recipe's sources (d4c.sample refuses the same at build)."""
    sample = ctx.data.get("sample")
    entries = sample.get("sources") if isinstance(sample, dict) else None
    if not isinstance(entries, list):
        return  # absent, or a shape the schema reports
    sources = {s.get("name"): s for _, s in ctx.items("sources")}
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        where = ("sample", "sources", i, "name")
        if name not in sources:
            ctx.add("D4C509", where, f"sample source `{name[:60]}` is not one of the recipe's sources")
            continue
        if name in seen:
            ctx.add("D4C509", where, f"sample source `{name[:60]}` is named twice")
        seen.add(name)
        rng, src = entry.get("range"), sources[name]
        if not isinstance(rng, dict):
            continue
        start, length, size = rng.get("start"), rng.get("length"), src.get("size")
        if src.get("extract"):
            ctx.add("D4C509", ("sample", "sources", i, "range"), f"`{name[:60]}` is an `extract: true` "
                    "archive: a byte range of it is not an archive (use `members`)")
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in (start, length, size)) \
                and start + length > size:  # type: ignore[operator]
            ctx.add("D4C509", ("sample", "sources", i, "range"), f"range ends at byte {start + length} "  # type: ignore[operator]
                    f"of the {size}-byte source `{name[:60]}`")


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
