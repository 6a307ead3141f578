"""The small pure pieces of the lints: URL hosts, ORCID check digits, paths (SemVer: test_semver)."""
from __future__ import annotations

from pathlib import Path

import pytest
from d4c.validate.checks_files import url_problem
from d4c.validate.checks_meta import orcid_ok, spdx_guess, spdx_ids
from d4c.validate.context import inside


@pytest.mark.parametrize(("url", "lint"), [
    ("https://www150.statcan.gc.ca/t1/tbl1/en/dtl!downloadDbLoadingData-nonTraduit.action", None),
    ("https://data.source.coop/dataforcanada/x/processed/a.parquet", None),
    ("https://[2606:4700::1111]/x", None),
    ("http://example.org/x", "D4C501"),
    ("ftp://example.org/x", "D4C501"),
    ("https://example.org:99999/x", "D4C501"),
    ("https:///x", "D4C501"),
    ("https://user@example.org/x", "D4C502"),
    ("https://u:p@example.org/x", "D4C502"),
    ("https://localhost/x", "D4C503"),
    ("https://a.localhost./x", "D4C503"),
    ("https://127.0.0.2/x", "D4C503"),
    ("https://127.1/x", "D4C503"),
    ("https://0x7f.0.0.1/x", "D4C503"),
    ("https://2130706433/x", "D4C503"),
    ("https://0/x", "D4C503"),
    ("https://[::1]:8443/x", "D4C503"),
    ("https://[fe80::1]/x", "D4C503"),
    ("https://172.16.5.4/x", "D4C503"),
    ("https://192.168.0.1/x", "D4C503"),
    ("https://100.64.0.1/x", None),  # shared address space (CGNAT) is not private in RFC 6890 terms
    ("https://printer.local/x", "D4C503"),
    ("https://db.internal/x", "D4C503"),
    # cloud metadata, in every spelling a client would connect to
    ("https://169.254.169.254/latest/meta-data/", "D4C503"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "D4C503"),
    ("https://2852039166/", "D4C503"),
    ("https://0xa9.0xfe.0xa9.0xfe/", "D4C503"),
    ("https://[::ffff:169.254.169.254]/", "D4C503"),  # IPv4-mapped
    ("https://[::ffff:127.0.0.1]/", "D4C503"),
    ("https://[::127.0.0.1]/", "D4C503"),  # IPv4-compatible
    ("https://[64:ff9b::a9fe:a9fe]/", "D4C503"),  # NAT64 of 169.254.169.254
    ("https://[2002:7f00:1::]/", "D4C503"),  # 6to4 of 127.0.0.1
    ("https://[fec0::1]/", "D4C503"),  # site-local
    ("https://[ff02::1]/", "D4C503"),
    ("https://[::ffff:8.8.8.8]/x", None),  # mapped, but what it reaches is public
    ("https://１２７.０.０.１/x", "D4C503"),  # fullwidth digits: NFKC, as IDNA clients do
    ("https://ｌｏｃａｌｈｏｓｔ/x", "D4C503"),
    ("https://bücher.example/x", None),  # IDN host names are fine
    ("https://169.254.169.254\\.example.org/x", "D4C501"),  # `\` is `/` to WHATWG parsers
    ("https://127。0。0。1/x", "D4C501"),
    ("https://ex ample.org/x", "D4C501"),
    ("https://[v1.x]/x", "D4C501"),  # IPvFuture: no client should guess
    # schemes that need no `//`
    ("javascript:alert(1)", "D4C501"),
    ("data:text/html,<b>x</b>", "D4C501"),
    ("file:///etc/passwd", "D4C501"),
    ("s3://bucket/key", "D4C501"),
    ("gs://bucket/key", "D4C501"),
    ("https:example.org", "D4C501"),
    (" http://example.org/x", "D4C501"),  # leading space is stripped by URL parsers
])
def test_url_problem(url: str, lint: str | None) -> None:
    found = url_problem(url, allow_loopback=False)
    assert (found[0] if found else None) == lint, found


def test_loopback_allowed_only_for_loopback() -> None:
    assert url_problem("http://127.0.0.1:8000/x", allow_loopback=True) is None
    assert url_problem("http://localhost:8000/x", allow_loopback=True) is None
    assert url_problem("http://10.0.0.1/x", allow_loopback=True) == (
        "D4C503", "URL points at the private or local host 10.0.0.1")
    assert url_problem("ftp://127.0.0.1/x", allow_loopback=True)[0] == "D4C501"  # type: ignore[index]


@pytest.mark.parametrize(("orcid", "ok"), [
    ("0000-0002-1825-0097", True), ("0000-0001-5109-3700", True), ("0000-0002-1694-233X", True),
    ("https://orcid.org/0000-0002-1825-0097", True), ("0000-0002-1825-0098", False),
    ("0000-0002-1694-2330", False), ("0000-0002-1825-009", False), ("http://orcid.org/0000-0002-1825-0097", False),
])
def test_orcid_check_digit(orcid: str, ok: bool) -> None:
    assert orcid_ok(orcid) is ok


def test_inside(tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "a.csv").write_text("x")
    (tmp_path / "sources" / "out").symlink_to("/etc")
    (tmp_path / "sources" / "loop").symlink_to(tmp_path / "sources" / "loop")
    assert inside(tmp_path, "sources/a.csv") == (tmp_path / "sources" / "a.csv").resolve()
    for bad in ("../x", "sources/../../x", "/etc/passwd", "C:/x", "sources\\a.csv", "",
                "sources/out/passwd", "sources/loop", "a\0b"):
        assert inside(tmp_path, bad) is None, bad


def test_spdx_list_has_the_open_data_licenses() -> None:
    ids = spdx_ids()
    assert len(ids) > 600
    for name in ("OGL-Canada-2.0", "CC-BY-4.0", "CC0-1.0", "ODbL-1.0", "PDDL-1.0", "ODC-By-1.0", "MIT"):
        assert ids[name] is False
    assert ids["GPL-2.0"] is True  # deprecated


def test_spdx_guess_is_the_canonical_spelling_else_the_closest_id() -> None:
    ids = spdx_ids()
    assert spdx_guess("cc-by-4.0", ids) == "CC-BY-4.0"
    assert spdx_guess("ogl-canada-2.0", ids) == "OGL-Canada-2.0"
    assert spdx_guess("CC-BY-4", ids) == "CC-BY-4.0"
    assert spdx_guess("MIT OR Apache-2.0", ids) in (None, *ids)  # an expression is not one id
