"""The `internet-archive` target against the fake IA-S3 + metadata API: item creation with
metadata headers once, SlowDown backoff, redirects, lagging file lists, crash-and-rerun,
no key in any output."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from d4c.errors import D4CError
from d4c.release.targets import TargetConfig, make_target
from d4c.release.targets.internet_archive import identifier
from fakes import make_context, run_release
from fakes.internet_archive import FakeInternetArchive

ACCESS, SECRET = "iaAccessCanary42", "iaSecretCanary0042xyz"
ITEM = "ca_test_demo_v1.0.0"


@pytest.fixture
def fake() -> Iterator[FakeInternetArchive]:
    with FakeInternetArchive(ACCESS, SECRET) as server:
        yield server


def target(fake: FakeInternetArchive, **options: Any) -> Any:
    cfg = TargetConfig(kind="internet-archive", name="ia", url="{key}",
                       credentials={"access": "IA_KEY", "secret": "IA_SECRET"},
                       options={"s3_url": fake.url, "archive_url": fake.url, "collection": "test_collection",
                                "settle_seconds": 3, **options})
    return make_target(cfg, {"IA_KEY": ACCESS, "IA_SECRET": SECRET})


def stored(fake: FakeInternetArchive, item: str = ITEM) -> dict[str, bytes]:
    return {name: f["data"] for name, f in fake.items[item]["files"].items()}


def expected(ctx: Any) -> dict[str, bytes]:
    return {f.file: f.path.read_bytes() for f in ctx.files}


def test_happy_path_metadata_once_and_download_url(fake: FakeInternetArchive, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    t = target(fake)
    facts = run_release(t, ctx)
    assert facts == {"ia_item": f"{fake.url}/details/{ITEM}"}
    assert stored(fake) == expected(ctx)
    meta = fake.items[ITEM]["metadata"]
    assert meta["title"] == "Test dataset v1.0.0" and meta["mediatype"] == "data"
    assert meta["title-fr"] == "Jeu de données d'essai"  # non-ASCII sent as uri(...)
    assert meta["description-fr"] == "Description en français, été."
    assert meta["collection"] == "test_collection" and meta["subject"] == ["boundaries", "test"]
    assert meta["creator"] == ["Ada Lovelace", "Data for Canada"]
    puts = fake.items[ITEM]["puts"]
    assert [any(k.startswith("x-archive-meta") for k in p) for p in puts] == [True, False]
    assert all(p["x-archive-queue-derive"] == "0" for p in puts)
    f = ctx.files[0]
    url = t.public_url(t.key_for("ca_test_demo", "1.0.0", f.file))
    assert url == f"{fake.url}/download/{ITEM}/{f.file}"
    assert hashlib.sha256(requests.get(url, timeout=10).content).hexdigest() == f.sha256
    before = fake.mutations
    run_release(target(fake), make_context(tmp_path))
    assert fake.mutations == before  # a rerun only looks


def test_default_public_url_is_archive_org(tmp_path: Path) -> None:
    cfg = TargetConfig(kind="internet-archive", name="ia", url="{key}")
    t = make_target(cfg, {})
    assert t.public_url(t.key_for("ca_x", "1.2.3", "a b.parquet")) == \
        "https://archive.org/download/ca_x_v1.2.3/a%20b.parquet"
    assert identifier("{id} v{version}!", "ca_x", "1.0.0") == "ca_x-v1.0.0-"
    with pytest.raises(D4CError, match="100 characters"):
        identifier("{id}" * 30, "ca_long_name", "1.0.0")


def test_slowdown_503_is_retried_with_retry_after(tmp_path: Path) -> None:
    names = {f"f{i}.csv": f"row {i}\n".encode() * 50 for i in range(4)}
    with FakeInternetArchive(ACCESS, SECRET, put_rate=2) as fake:
        ctx = make_context(tmp_path, contents=names)
        run_release(target(fake), ctx)
        assert stored(fake) == expected(ctx)
        assert any(status == 503 for m, _, status in fake.log if m == "PUT")


def test_redirects_and_lagging_file_list(tmp_path: Path) -> None:
    with FakeInternetArchive(ACCESS, SECRET, redirect=True, lag_reads=2) as fake:
        ctx = make_context(tmp_path)
        run_release(target(fake), ctx)
        assert stored(fake) == expected(ctx)
        assert any(status == 307 for _, _, status in fake.log)


def test_lagging_list_past_the_settle_time_fails_verify_then_rerun_converges(tmp_path: Path) -> None:
    with FakeInternetArchive(ACCESS, SECRET, lag_reads=100) as fake:
        ctx = make_context(tmp_path)
        t = target(fake, settle_seconds=0.3)
        t.prepare(ctx)
        f = ctx.files[0]
        key = t.key_for(ctx.dataset_id, ctx.version, f.file)
        t.upload(key, f.path, f.sha256, f.md5)
        assert not t.verify(key, f.sha256)
        fake.lag_reads = 0
        for entry in fake.items[ITEM]["files"].values():
            entry["reads_left"] = 0
        run_release(target(fake), make_context(tmp_path))
        assert [m for m, _, s in fake.log if m == "PUT" and s == 200] == ["PUT"] * 2


def test_crash_after_each_put_then_rerun(tmp_path: Path) -> None:
    for n in (1, 2):
        with FakeInternetArchive(ACCESS, SECRET) as fake:
            ctx = make_context(tmp_path / f"r{n}")
            fake.drop_after_mutation(n)  # applied, answer lost: the session retries the PUT
            try:
                run_release(target(fake), ctx)
            except D4CError:
                pass
            fake.drop_after_mutation(None)
            run_release(target(fake), make_context(tmp_path / f"r{n}"))
            assert stored(fake) == expected(ctx)
            assert len(fake.items) == 1 and fake.items[ITEM]["metadata"]["title"] == "Test dataset v1.0.0"


def test_reset_before_apply_and_corrupt_copy(fake: FakeInternetArchive, tmp_path: Path) -> None:
    fake.reset("PUT", r"\.parquet$", times=2)
    ctx = make_context(tmp_path)
    run_release(target(fake), ctx)
    assert stored(fake) == expected(ctx)
    fake.items[ITEM]["files"][ctx.files[0].file]["data"] = b"damaged"
    t = target(fake)
    t.prepare(ctx)
    with pytest.raises(D4CError, match="different content"):
        t.exists(f"{ITEM}/{ctx.files[0].file}", ctx.files[0].sha256)


def test_foreign_item_and_keys_never_shown(fake: FakeInternetArchive, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    hdr = {"Authorization": f"LOW {ACCESS}:{SECRET}", "x-archive-auto-make-bucket": "1",
           "x-archive-meta-title": "someone else's"}
    requests.put(f"{fake.url}/{ITEM}/x.txt", data=b"x", headers=hdr, timeout=10).raise_for_status()
    with pytest.raises(D4CError, match="not this release"):
        target(fake).prepare(make_context(tmp_path))
    with FakeInternetArchive(ACCESS, "wrong-secret-value") as wrong, pytest.raises(D4CError, match="403") as err:
        run_release(target(wrong), make_context(tmp_path / "w"))
    out = capsys.readouterr()
    text = err.value.line() + out.out + out.err + caplog.text
    assert SECRET not in text and ACCESS not in text
    with pytest.raises(D4CError, match="IA_SECRET"):
        make_target(TargetConfig(kind="internet-archive", name="ia", url="{key}",
                                 credentials={"access": "IA_KEY", "secret": "IA_SECRET"},
                                 options={"archive_url": fake.url}), {"IA_KEY": "x"}).prepare(
            make_context(tmp_path / "n"))
