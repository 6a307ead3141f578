"""The `zenodo` target against the fake InvenioRDM server: happy path, new versions,
crash-and-rerun at every side effect, faults, limits, and no token in any output."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from d4c.errors import D4CError
from d4c.release.targets import TargetConfig, make_target
from d4c.release.targets.base import ReleaseFile
from fakes import make_context, run_release
from fakes.zenodo import FakeZenodo

TOKEN = "zenodo-canary-7f3a9c1e5b"


@pytest.fixture
def fake() -> Iterator[FakeZenodo]:
    with FakeZenodo(TOKEN) as server:
        yield server


def target(fake: FakeZenodo, **options: Any) -> Any:
    cfg = TargetConfig(kind="zenodo", name="zenodo", url="{key}", credentials={"token": "ZENODO_TOKEN"},
                       options={"base_url": fake.url, "retry_wait_max": 2, "index_lag_seconds": 0, **options})
    return make_target(cfg, {"ZENODO_TOKEN": TOKEN})


def published_files(fake: FakeZenodo, version: str) -> dict[str, bytes | None]:
    (rec,) = [r for r in fake.published() if r.metadata.get("version") == version]
    return {k: f.data for k, f in rec.files.items()}


def expected(ctx: Any) -> dict[str, bytes]:
    return {f.file: f.path.read_bytes() for f in ctx.files}


def test_happy_path_metadata_doi_and_web_seed_url(fake: FakeZenodo, tmp_path: Path) -> None:
    urls = {"s3": {"a.parquet": "https://data.source.coop/x/a.parquet"},
            "github": {"a.parquet": "https://github.com/o/r/releases/download/ca_test_demo/v1.0.0/a.parquet"}}
    ctx = make_context(tmp_path, urls=urls)
    t = target(fake)
    facts = run_release(t, ctx)
    (rec,) = fake.published()
    assert facts["doi"] == f"10.5072/zenodo.{rec.id}" and facts["concept_doi"] == f"10.5072/zenodo.{rec.parent}"
    assert published_files(fake, "1.0.0") == expected(ctx)
    meta = rec.metadata
    assert meta["title"] == "Test dataset" and meta["version"] == "1.0.0"
    assert meta["additional_titles"][0]["title"] == "Jeu de données d'essai"
    assert meta["additional_descriptions"][0]["lang"] == {"id": "fra"}
    ada = meta["creators"][0]
    assert ada["person_or_org"]["family_name"] == "Lovelace"
    assert ada["person_or_org"]["identifiers"] == [{"scheme": "orcid", "identifier": "0000-0002-1825-0097"}]
    assert ada["affiliations"] == [{"name": "Data for Canada"}]
    assert meta["creators"][1]["person_or_org"]["type"] == "organizational"
    assert meta["rights"] == [{"id": "cc-by-4.0"}]
    related = {r["identifier"]: r["relation_type"]["id"] for r in meta["related_identifiers"]}
    assert related["https://data.source.coop/x/a.parquet"] == "isidenticalto"
    assert related["https://github.com/o/r/releases/tag/ca_test_demo/v1.0.0"] == "issupplementedby"
    # public_url is the web-seed form and serves the bytes
    f = ctx.files[0]
    url = t.public_url(f.file)
    assert url == f"{fake.url}/records/{rec.id}/files/{f.file}?download=1"
    assert hashlib.sha256(requests.get(url, timeout=10).content).hexdigest() == f.sha256
    # a rerun after success changes nothing
    before = fake.mutations
    assert run_release(target(fake), make_context(tmp_path, urls=urls))["doi"] == facts["doi"]
    assert fake.mutations == before and len(fake.records) == 1


def test_new_version_starts_without_files_and_shares_the_concept(fake: FakeZenodo, tmp_path: Path) -> None:
    first = run_release(target(fake), make_context(tmp_path))
    (v1,) = fake.published()
    # the service itself: a new-version draft has no files, and asking twice gives the same draft
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    draft = requests.post(f"{fake.url}/api/records/{v1.id}/versions", headers=hdr, timeout=10).json()
    files = requests.get(f"{fake.url}/api/records/{draft['id']}/draft/files", headers=hdr, timeout=10).json()
    assert files["entries"] == [] and "version" not in draft["metadata"]
    again = requests.post(f"{fake.url}/api/records/{v1.id}/versions", headers=hdr, timeout=10).json()
    assert again["id"] == draft["id"]
    # the target reuses that pending draft (found through the concept) for 1.1.0
    ctx = make_context(tmp_path, version="1.1.0")
    second = run_release(target(fake), ctx)
    assert second["record_id"] == draft["id"]
    assert second["concept_doi"] == first["concept_doi"] and second["doi"] != first["doi"]
    assert published_files(fake, "1.1.0") == expected(ctx)
    assert len(fake.published()) == 2 and not fake.drafts()


def test_stale_files_in_a_reused_draft_are_removed(fake: FakeZenodo, tmp_path: Path) -> None:
    run_release(target(fake), make_context(tmp_path))
    (v1,) = fake.published()
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    draft = requests.post(f"{fake.url}/api/records/{v1.id}/versions", headers=hdr, timeout=10).json()
    requests.post(f"{fake.url}/api/records/{draft['id']}/draft/actions/files-import", headers=hdr, timeout=10)
    assert len(fake.records[draft["id"]].files) == 2  # the old version's files, imported
    ctx = make_context(tmp_path, version="2.0.0")
    run_release(target(fake), ctx)
    assert published_files(fake, "2.0.0") == expected(ctx)


def clean_mutations(tmp_path: Path, prior: bool) -> int:
    with FakeZenodo(TOKEN) as fake:
        if prior:
            run_release(target(fake), make_context(tmp_path / "prior"))
        start = fake.mutations
        run_release(target(fake), make_context(tmp_path, version="1.1.0"))
        return fake.mutations - start


@pytest.mark.parametrize("prior", [False, True], ids=["first-version", "new-version"])
def test_crash_after_each_side_effect_then_rerun(tmp_path: Path, prior: bool) -> None:
    total = clean_mutations(tmp_path / "clean", prior)
    assert total >= 7  # create/version, metadata, doi, 2 x (init, content, commit), publish
    crashed = 0
    for n in range(1, total + 1):
        with FakeZenodo(TOKEN) as fake:
            if prior:
                run_release(target(fake), make_context(tmp_path / f"p{n}"))
            ctx = make_context(tmp_path / f"r{n}", version="1.1.0")
            fake.drop_after_mutation(n)  # the n-th side effect happens, its answer is lost
            try:
                run_release(target(fake), ctx)
            except D4CError:
                crashed += 1  # a lost POST answer stops the run; an idempotent PUT is retried
            fake.drop_after_mutation(None)
            # a fresh machine: no journal hint, a new target object
            facts = run_release(target(fake), make_context(tmp_path / f"r{n}", version="1.1.0"))
            versions = [r for r in fake.records.values() if r.metadata.get("version") == "1.1.0"]
            assert len(versions) == 1 and versions[0].published, f"crash point {n}"
            assert not fake.drafts(), f"crash point {n}"
            assert published_files(fake, "1.1.0") == expected(ctx), f"crash point {n}"
            assert facts["doi"] == versions[0].doi
            assert len(fake.published()) == (2 if prior else 1)
    # PUTs (2 x metadata, 2 x content) are retried; a lost publish answer is read back
    assert crashed == total - 5


def test_lost_publish_answer_is_read_back_not_resent(fake: FakeZenodo, tmp_path: Path) -> None:
    fake.reset("POST", r"/actions/publish$")  # transport error before any answer
    with pytest.raises(D4CError, match="connection|reset|aborted|publish"):
        run_release(target(fake), make_context(tmp_path))
    assert not fake.published()
    run_release(target(fake), make_context(tmp_path))
    publishes = [e for e in fake.log if e[1].endswith("/actions/publish") and e[2] == 202]
    assert len(publishes) == 1 and len(fake.published()) == 1


def test_faults_429_503_and_resets_are_absorbed(tmp_path: Path) -> None:
    with FakeZenodo(TOKEN, rate_limit=6, rate_window=1.0) as fake:
        fake.fail("GET", r"/draft/files$", 503, times=2, headers={"Retry-After": "0"})
        # a refused POST (429 = not applied) is the one POST that may simply be sent again
        fake.fail("POST", r"/commit$", 429, headers={"Retry-After": "0"})
        fake.reset("PUT", r"/content$", times=1)
        fake.reset("GET", r"/api/user/records$", times=1)
        ctx = make_context(tmp_path)
        run_release(target(fake), ctx)
        assert published_files(fake, "1.0.0") == expected(ctx)
        assert sum(status == 429 for _, _, status in fake.log) >= 2  # the limiter bit too
        assert ("POST", 429) in {(m, s) for m, p, s in fake.log if p.endswith("/commit")}
        assert any(status == 503 for _, _, status in fake.log)


def test_limits_are_checked_before_any_call(fake: FakeZenodo, tmp_path: Path) -> None:
    # 60 data files + the 60 torrents made after prepare() exceed 100 files
    ctx = make_context(tmp_path, contents={f"f{i:03}.csv": b"x" for i in range(60)})
    with pytest.raises(D4CError, match="120 files"):
        target(fake).prepare(ctx)
    big = make_context(tmp_path / "big")
    f = big.files[0]
    big.files[0] = ReleaseFile(f.role, f.name, f.file, f.path, 50 * 10**9 + 1, f.sha256, f.md5, f.media_type)
    with pytest.raises(D4CError, match="exceed Zenodo's limits"):
        target(fake).prepare(big)
    assert fake.log == []


def test_token_never_shown(fake: FakeZenodo, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                           capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    run_release(target(fake), make_context(tmp_path))
    wrong = FakeZenodo("another-token-entirely")
    with wrong, pytest.raises(D4CError) as err:
        target(wrong).prepare(make_context(tmp_path / "w"))
    assert "401" in err.value.line() or "403" in err.value.line()
    out = capsys.readouterr()
    assert TOKEN not in err.value.line() + out.out + out.err + caplog.text
    cfg = TargetConfig(kind="zenodo", name="z", url="{key}", credentials={"token": "ZENODO_TOKEN"},
                       options={"base_url": fake.url})
    with pytest.raises(D4CError, match="ZENODO_TOKEN"):
        make_target(cfg, {}).prepare(make_context(tmp_path / "n"))


def test_retain_latest_is_refused(fake: FakeZenodo) -> None:
    cfg = TargetConfig(kind="zenodo", name="z", url="{key}", retain="latest", options={"base_url": fake.url})
    with pytest.raises(D4CError, match="permanent"):
        make_target(cfg, {"ZENODO_TOKEN": TOKEN})


class Crash(Exception):
    pass


def test_crash_from_the_side_effect_hook_then_rerun(tmp_path: Path) -> None:
    """The orchestrator's crash injection: die right after each reported side effect."""
    k = 0
    while True:
        k += 1
        seen: list[str] = []

        def hook(what: str, seen: list[str] = seen, k: int = k) -> None:
            seen.append(what)
            if len(seen) == k:
                raise Crash(what)

        with FakeZenodo(TOKEN) as fake:
            run_release(target(fake), make_context(tmp_path / f"p{k}"))
            ctx = make_context(tmp_path / f"r{k}", version="1.1.0", on_side_effect=hook)
            try:
                run_release(target(fake), ctx)
                break  # no k-th side effect: every crash point was covered
            except Crash:
                pass
            run_release(target(fake), make_context(tmp_path / f"r{k}", version="1.1.0"))
            assert len(fake.published()) == 2 and not fake.drafts(), seen
            assert published_files(fake, "1.1.0") == expected(ctx)
    assert k == 6  # draft, metadata, doi, final metadata, published + the clean run


def test_public_url_before_prepare_names_the_missing_id(fake: FakeZenodo) -> None:
    assert target(fake).public_url("a b.csv") == f"{fake.url}/records/{{record_id}}/files/a%20b.csv?download=1"


def test_search_lag_after_a_lost_create_does_not_duplicate(tmp_path: Path) -> None:
    with FakeZenodo(TOKEN, search_lag=0.5) as fake:
        fake.drop_after_mutation(1)  # the draft is made, the answer lost, search does not see it yet
        with pytest.raises(D4CError):
            run_release(target(fake, index_lag_seconds=1.0), make_context(tmp_path))
        fake.drop_after_mutation(None)
        run_release(target(fake, index_lag_seconds=1.0), make_context(tmp_path))
        assert len(fake.records) == 1 and len(fake.published()) == 1


def test_new_version_of_a_concept_known_only_from_the_release_record(
        fake: FakeZenodo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concept without urn identifiers (made by hand): found through the `record_id` the
    zenodo target returned for the previous version, as its release record keeps it."""
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    meta = {"title": "Hand-made", "creators": [{"person_or_org": {"name": "x"}}],
            "publication_date": "2025-01-01", "resource_type": {"id": "dataset"}, "version": "0.9.0"}
    rid = requests.post(f"{fake.url}/api/records", json={"metadata": meta}, headers=hdr, timeout=10).json()["id"]
    base = f"{fake.url}/api/records/{rid}/draft"
    requests.post(f"{base}/files", json=[{"key": "old.csv"}], headers=hdr, timeout=10)
    requests.put(f"{base}/files/old.csv/content", data=b"old", headers=hdr, timeout=10)
    requests.post(f"{base}/files/old.csv/commit", headers=hdr, timeout=10)
    assert requests.post(f"{base}/actions/publish", headers=hdr, timeout=10).status_code == 202
    from catalog_factory import make_record

    record = make_record("ca_test_demo", "0.9.0")  # as d4c release wrote it: with the target's facts
    record["targets"] = {"zenodo": {"record_id": str(rid), "doi": None, "concept_doi": None}}
    (tmp_path / "repo/releases/ca_test_demo").mkdir(parents=True)
    (tmp_path / "repo/releases/ca_test_demo/0.9.0.json").write_text(json.dumps(record))
    monkeypatch.setenv("D4C_REPO", str(tmp_path / "repo"))
    ctx = make_context(tmp_path)
    facts = run_release(target(fake), ctx)
    (new,) = [r for r in fake.published() if r.id != rid]
    assert new.parent == fake.records[rid].parent and facts["concept_doi"] == f"10.5072/zenodo.{new.parent}"
    assert published_files(fake, "1.0.0") == expected(ctx)  # not the old version's file


def test_duplicate_drafts_of_this_version_are_discarded(fake: FakeZenodo, tmp_path: Path) -> None:
    t = target(fake)
    t.prepare(make_context(tmp_path))
    # a second draft for the same version, as a create lost in the search lag would leave
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    body = {"metadata": fake.records[t.record_id].metadata}
    requests.post(f"{fake.url}/api/records", json=body, headers=hdr, timeout=10).raise_for_status()
    assert len(fake.drafts()) == 2
    ctx = make_context(tmp_path)
    run_release(target(fake), ctx)
    assert len(fake.records) == 1 and published_files(fake, "1.0.0") == expected(ctx)
