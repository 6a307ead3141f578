"""Fetch order (cache -> git path -> mirrors -> recipe URLs), mirror kinds, and `d4c fetch`."""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from d4c import fetch
from d4c.cli import main
from d4c.errors import D4CError
from test_fetch_server import SourceServer
from test_fetch_sources import BODY, DATASET, SHA, make_recipe, run, src

KEY = f"sources/sha256/{SHA[:2]}/{SHA}"


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with SourceServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_env_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("D4C_MIRRORS", raising=False)


def folder_mirror(root: Path, body: bytes = BODY) -> Path:
    sha = hashlib.sha256(body).hexdigest()
    dest = root / "sources" / "sha256" / sha[:2] / sha
    dest.parent.mkdir(parents=True)
    dest.write_bytes(body)
    return root


def test_http_mirror_is_tried_before_the_recipe_url(tmp_path: Path, server: SourceServer) -> None:
    server.add(f"/mirror/{KEY}", BODY)
    rec = make_recipe(tmp_path, src(server.base + "/upstream.bin"))
    assert run(rec, mirrors=[server.base + "/mirror/"])["data"].read_bytes() == BODY
    assert server.requests_for("/upstream.bin") == []


def test_missing_mirror_falls_through_to_the_recipe_url(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/upstream.bin", BODY)
    rec = make_recipe(tmp_path, src(url))
    assert run(rec, mirrors=[server.base + "/empty"])["data"].read_bytes() == BODY
    assert len(server.requests_for(f"/empty/{KEY}")) == 1


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_local_folder_mirror(tmp_path: Path, form: str) -> None:
    root = folder_mirror(tmp_path / "mirror")
    base = str(root) if form == "path" else root.as_uri()
    rec = make_recipe(tmp_path, src("http://no-such-host.invalid/x"))
    assert run(rec, mirrors=[base])["data"].read_bytes() == BODY


def test_env_mirrors_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_MIRRORS", f"{tmp_path}/nothing-here {folder_mirror(tmp_path / 'm')}")
    assert run(make_recipe(tmp_path, src(None)))["data"].read_bytes() == BODY


def test_repository_publish_folder_is_a_mirror(tmp_path: Path) -> None:
    folder_mirror(tmp_path / "repo" / ".d4c" / "publish")
    assert run(make_recipe(tmp_path, src(None)))["data"].read_bytes() == BODY


def test_mirrors_mode_never_touches_recipe_urls(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/upstream.bin", BODY)
    with pytest.raises(D4CError) as err:
        run(make_recipe(tmp_path, src(url)), mode="mirrors", mirrors=[server.base + "/m"])
    assert server.requests_for("/upstream.bin") == []
    assert "/m/sources/sha256/" in err.value.message and "HTTP 404" in err.value.message


def test_mirror_with_wrong_bytes_is_skipped(tmp_path: Path, server: SourceServer) -> None:
    server.add(f"/m/{KEY}", b"not it")
    url = server.add("/upstream.bin", BODY)
    assert run(make_recipe(tmp_path, src(url)), mirrors=[server.base + "/m"])["data"].read_bytes() == BODY
    assert not fetch.cache_path(hashlib.sha256(b"not it").hexdigest()).exists()


def test_git_path_source_is_hashed_in_place_and_cached(tmp_path: Path) -> None:
    rec = make_recipe(tmp_path, src(path="sources/data.bin"))
    (rec.folder / "sources").mkdir()
    (rec.folder / "sources" / "data.bin").write_bytes(BODY)
    got = run(rec)["data"]
    assert got == fetch.cache_path(SHA) and got.read_bytes() == BODY


def test_git_path_source_with_other_bytes_is_refused(tmp_path: Path) -> None:
    rec = make_recipe(tmp_path, src(path="sources/data.bin"))
    (rec.folder / "sources").mkdir()
    (rec.folder / "sources" / "data.bin").write_bytes(BODY[:-1] + b"!")
    with pytest.raises(D4CError) as err:
        run(rec)
    assert "sources/data.bin" in err.value.message and SHA in err.value.message
    assert DATASET in err.value.message
    assert not fetch.cache_path(SHA).exists()


def test_bad_sha256_in_recipe_is_one_line(tmp_path: Path) -> None:
    rec = make_recipe(tmp_path, fetch.Source(name="x", sha256="ABC", url="http://127.0.0.1:9/x"))
    with pytest.raises(D4CError, match="not 64 lowercase hex"):
        run(rec)


def test_cli_fetches_a_demo_dataset(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(repo_copy)
    assert main(["fetch", "ca_statcan_2021_population-density_provinces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["population", "land-area"]
    for line in lines:
        _, sha, path = line.split("\t")
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha


def test_cli_mirrors_mode_reports_one_line(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(repo_copy)
    shutil.rmtree(repo_copy / "datasets" / "ca_d4c_provinces-territories" / "sources")
    code = main(["fetch", "ca_d4c_provinces-territories", "--sources", "mirrors",
                 "--mirror", str(repo_copy / "no-mirror")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("error: dataset ca_d4c_provinces-territories, source 'provinces-territories'")
    assert "not present" in err


def test_git_path_edit_is_caught_even_when_cached(tmp_path: Path) -> None:
    rec = make_recipe(tmp_path, src(path="sources/data.bin"))
    (rec.folder / "sources").mkdir()
    (rec.folder / "sources" / "data.bin").write_bytes(BODY)
    run(rec)
    (rec.folder / "sources" / "data.bin").write_bytes(b"edited")
    with pytest.raises(D4CError, match=hashlib.sha256(b"edited").hexdigest()):
        run(rec)
    assert fetch.cache_path(SHA).read_bytes() == BODY  # the good copy stays


@pytest.mark.parametrize("path", ["../other/data.bin", "/etc/hostname"])
def test_git_path_outside_the_dataset_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(D4CError, match="must stay inside the dataset folder"):
        run(make_recipe(tmp_path, src(path=path)))


def test_a_gone_url_falls_back_to_the_copies_the_release_records_list(
        tmp_path: Path, server: SourceServer) -> None:
    """docs/contributing.md: releases copy every source to the mirrors, so the build still
    works when the URL disappears (the outsider's trial: build and fetch never looked)."""
    import json

    from catalog_factory import make_record

    mirrored = server.add(f"/bucket/{KEY}", BODY)
    rec = make_recipe(tmp_path, src(server.base + "/gone.bin"))  # the origin answers 404
    record = make_record(DATASET, "1.0.0")
    record["sources"] = [{"name": "data", "sha256": SHA, "size": len(BODY),
                          "urls": {"metadata": "http://169.254.169.254/latest/" + SHA,  # not tried
                                   "odd": "ftp://example.org/" + SHA, "sc": mirrored}}]
    (tmp_path / "repo" / "releases" / DATASET).mkdir(parents=True)
    (tmp_path / "repo" / "releases" / DATASET / "1.0.0.json").write_text(json.dumps(record))
    (tmp_path / "repo" / "releases" / DATASET / "0.9.0.json").write_text("{not json")  # passed over
    assert run(rec)["data"].read_bytes() == BODY
    assert len(server.requests_for("/gone.bin")) == 1  # the recipe URL first, then the record's copy
    assert len(server.requests_for(f"/bucket/{KEY}")) == 1
    # Only the places asked for: `d4c verify --mirror` (defaults=False) never reads the records.
    shutil.rmtree(fetch.paths.cache_dir())
    with pytest.raises(D4CError) as only:
        run(rec, mode="mirrors", defaults=False)
    assert "no mirror or URL to try" in str(only.value)
