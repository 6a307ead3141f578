"""The `github` target against the fake releases API: draft -> missing assets -> publish,
immutable releases, duplicate names (422), failed uploads, crash-and-rerun, no token leak."""
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
from fakes import make_context, run_release
from fakes.github import FakeGitHub

TOKEN = "ghp_canaryGitHubToken0123456789"
TAG = "ca_test_demo/v1.0.0"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(TOKEN) as server:
        yield server


def target(fake: FakeGitHub, **options: Any) -> Any:
    cfg = TargetConfig(kind="github", name="github", url="{key}", credentials={"token": "GH_RELEASE_TOKEN"},
                       options={"repo": "dataforcanada/d4c", "api_url": fake.url, "web_url": fake.url,
                                "retry_wait_max": 1, **options})
    return make_target(cfg, {"GH_RELEASE_TOKEN": TOKEN})


def assets(fake: FakeGitHub, tag: str = TAG) -> dict[str, bytes]:
    (rel,) = [r for r in fake.releases.values() if r["tag_name"] == tag]
    return {name: fake.blobs[a["id"]] for name, a in rel["assets"].items() if a["state"] == "uploaded"}


def expected(ctx: Any) -> dict[str, bytes]:
    return {f.file: f.path.read_bytes() for f in ctx.files}


def test_happy_path_draft_assets_publish(fake: FakeGitHub, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, urls={"zenodo": {"ca_test_demo_v1.0.0.parquet": "https://zenodo.org/records/1/files/x"}},
                       manifest={"code": {"commit": "a" * 40}})
    t = target(fake)
    facts = run_release(t, ctx)
    (rel,) = fake.releases.values()
    assert not rel["draft"] and rel["immutable"] and rel["tag_name"] == TAG
    assert rel["target_commitish"] == "a" * 40
    assert facts["github_release"] == f"{fake.url}/dataforcanada/d4c/releases/tag/{TAG}"
    assert assets(fake) == expected(ctx)
    assert "https://zenodo.org/records/1/files/x" in rel["body"] and ctx.files[0].sha256 in rel["body"]
    assert "Jeu de données d'essai" in rel["body"]
    # the public URL is the asset's download URL and serves the bytes
    f = ctx.files[0]
    url = t.public_url(t.key_for("ca_test_demo", "1.0.0", f.file))
    assert url == f"{fake.url}/dataforcanada/d4c/releases/download/{TAG}/{f.file}"
    assert hashlib.sha256(requests.get(url, timeout=10).content).hexdigest() == f.sha256
    # a rerun finds the published release by tag and changes nothing
    before = fake.mutations
    run_release(target(fake), make_context(tmp_path))
    assert fake.mutations == before and len(fake.releases) == 1


def test_immutable_release_refuses_assets_after_publish(fake: FakeGitHub, tmp_path: Path) -> None:
    run_release(target(fake), make_context(tmp_path))
    (rel,) = fake.releases.values()
    up = requests.post(f"{fake.url}/uploads/repos/dataforcanada/d4c/releases/{rel['id']}/assets",
                       params={"name": "late.txt"}, data=b"late", timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
    assert up.status_code == 422
    # a release whose files changed cannot be "fixed" in place
    ctx = make_context(tmp_path / "changed", contents={"ca_test_demo_v1.0.0.parquet": b"other bytes"})
    with pytest.raises(D4CError, match="published asset .* has other bytes"):
        run_release(target(fake), ctx)


def test_duplicate_asset_422_is_read_back(fake: FakeGitHub, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    t = target(fake)
    t.prepare(ctx)
    f = ctx.files[0]
    key = t.key_for(ctx.dataset_id, ctx.version, f.file)
    t.upload(key, f.path, f.sha256, f.md5)
    fake.stale_listings(1)  # the next look misses the asset: the POST meets 422 already_exists
    target(fake).upload(key, f.path, f.sha256, f.md5)
    posts = [s for m, p, s in fake.log if m == "POST" and p.endswith("/assets")]
    assert posts == [201, 422]
    assert assets(fake) == {f.file: f.path.read_bytes()}
    # with other bytes under that name, the 422 is an error, not a silent success
    other = tmp_path / "other.bin"
    other.write_bytes(b"different")
    fake.stale_listings(1)
    with pytest.raises(D4CError, match="already_exists"):
        target(fake).upload(key, other, hashlib.sha256(b"different").hexdigest(), "")


def test_failed_upload_leaves_a_starter_asset_that_is_replaced(fake: FakeGitHub, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    fake.break_next_upload()
    with pytest.raises(D4CError, match="502"):
        run_release(target(fake), ctx)
    (rel,) = fake.releases.values()
    assert [a["state"] for a in rel["assets"].values()] == ["starter"]
    run_release(target(fake), make_context(tmp_path))
    assert assets(fake) == expected(ctx)


def test_duplicate_drafts_are_collapsed(fake: FakeGitHub, tmp_path: Path) -> None:
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(3):  # GitHub allows several drafts for one tag
        requests.post(f"{fake.url}/repos/dataforcanada/d4c/releases", headers=hdr, timeout=10,
                      json={"tag_name": TAG, "draft": True}).raise_for_status()
    for i in range(120):  # other releases, so the listing pages
        fake.releases[i] = {"id": i, "tag_name": f"x/v{i}.0.0", "name": "x", "body": "", "draft": False,
                            "prerelease": False, "immutable": True, "target_commitish": "main", "assets": {}}
    run_release(target(fake), make_context(tmp_path))
    mine = [r for r in fake.releases.values() if r["tag_name"] == TAG]
    assert len(mine) == 1 and not mine[0]["draft"]


def run_counting(tmp_path: Path) -> int:
    with FakeGitHub(TOKEN) as fake:
        run_release(target(fake), make_context(tmp_path))
        return fake.mutations


def test_crash_after_each_side_effect_then_rerun(tmp_path: Path) -> None:
    total = run_counting(tmp_path / "clean")
    assert total == 4  # draft, 2 assets, publish
    for n in range(1, total + 1):
        with FakeGitHub(TOKEN) as fake:
            ctx = make_context(tmp_path / f"r{n}")
            fake.drop_after_mutation(n)  # the n-th side effect happens, its answer is lost
            try:
                run_release(target(fake), ctx)
            except D4CError:
                pass
            fake.drop_after_mutation(None)
            run_release(target(fake), make_context(tmp_path / f"r{n}"))
            mine = [r for r in fake.releases.values() if r["tag_name"] == TAG]
            assert len(mine) == 1 and not mine[0]["draft"], f"crash point {n}"
            assert assets(fake) == expected(ctx), f"crash point {n}"
            creates = [e for e in fake.log if e[0] == "POST" and e[1].endswith("/releases")]
            assert len(creates) == 1, f"crash point {n}: create re-sent"


def test_rate_limit_and_resets_are_absorbed(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.fail("POST", r"/releases$", 403, headers={"Retry-After": "0", "X-RateLimit-Remaining": "0"},
              body=b'{"message": "You have exceeded a secondary rate limit"}')
    fake.fail("POST", r"/assets$", 429, headers={"Retry-After": "0"})
    fake.reset("GET", r"/assets$", times=2)
    fake.fail("GET", r"/releases/tags/", 503, times=2, headers={"Retry-After": "0"})
    ctx = make_context(tmp_path)
    run_release(target(fake), ctx)
    assert assets(fake) == expected(ctx) and len(fake.releases) == 1


def test_token_never_shown(fake: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                           capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    run_release(target(fake), make_context(tmp_path))
    with FakeGitHub("another-token") as wrong, pytest.raises(D4CError, match="401") as err:
        target(wrong).prepare(make_context(tmp_path / "w"))
    out = capsys.readouterr()
    assert TOKEN not in err.value.line() + out.out + out.err + caplog.text
    with pytest.raises(D4CError, match="GH_RELEASE_TOKEN"):
        make_target(TargetConfig(kind="github", name="g", url="{key}", credentials={"token": "GH_RELEASE_TOKEN"},
                                 options={"repo": "o/r", "api_url": fake.url}), {}).prepare(make_context(tmp_path))


def test_config_errors(fake: FakeGitHub) -> None:
    with pytest.raises(D4CError, match="owner/name"):
        make_target(TargetConfig(kind="github", name="g", url="{key}", options={}), {})
    with pytest.raises(D4CError, match="every version"):
        make_target(TargetConfig(kind="github", name="g", url="{key}", retain="latest",
                                 options={"repo": "o/r"}), {})


def test_journal_hint_spares_listing_every_release(fake: FakeGitHub, tmp_path: Path) -> None:
    first = target(fake).prepare(make_context(tmp_path))
    fake.log.clear()
    ctx = make_context(tmp_path, state={"release_id": first["release_id"]})
    assert target(fake).prepare(ctx) == first
    assert not [p for m, p, _ in fake.log if m == "GET" and p.endswith("/releases")]
    stale = make_context(tmp_path, state={"release_id": 999999})  # a hint, never the truth
    assert target(fake).prepare(stale) == first and len(fake.releases) == 1


def test_assets_without_digest_are_hashed(fake: FakeGitHub, tmp_path: Path) -> None:
    """Assets uploaded before GitHub reported digests: the bytes are fetched and hashed."""
    ctx = make_context(tmp_path)
    run_release(target(fake), ctx)
    (rel,) = fake.releases.values()
    for a in rel["assets"].values():
        a["digest"] = None
    before = fake.mutations
    run_release(target(fake), make_context(tmp_path))
    assert fake.mutations == before
    fake.blobs[rel["assets"][ctx.files[0].file]["id"]] = b"tampered"  # and no digest to tell
    with pytest.raises(D4CError, match="other bytes"):
        run_release(target(fake), make_context(tmp_path))
