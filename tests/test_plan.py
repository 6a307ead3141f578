"""`d4c plan`: each touch rule, in real git repositories built in tmp dirs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from d4c.errors import D4CError
from d4c.plan import plan

A, B, C = "ca_test_alpha", "ca_test_beta", "ca_test_gamma"
ENV = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]


def recipe(ds: str, version: str = "1.0.0", sha: str = "a" * 64, sample: bool = False) -> str:
    text = (f"id: {ds}\nversion: {version}\nsources:\n  - name: s\n    path: sources/s.csv\n"
            f"    sha256: {sha}\ntransform:\n  python: transform.py:build\n")
    return text + ("sample:\n  params: {rows: 2}\n" if sample else "")


def write(root: Path, files: dict[str, str | None]) -> None:
    for rel, text in files.items():
        p = root / rel
        if text is None:
            p.unlink()
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def commit(root: Path, msg: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", msg], cwd=root, check=True, env=ENV)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    write(root, {
        "pyproject.toml": "[project]\nname='x'\n",
        "requirements.lock": "x==1\n",
        "scripts/d4c/__init__.py": "",
        "docker/Dockerfile": "FROM scratch\n",
        "schemas/recipe.schema.json": "{}\n",
        "README.md": "hi\n",
        # alpha imports a shared helper package, which imports another helper
        f"datasets/{A}/recipe.yaml": recipe(A),
        f"datasets/{A}/transform.py": "from _shared import geo\n\ndef build(ctx):\n    geo.f()\n",
        "datasets/_shared/__init__.py": "",
        "datasets/_shared/geo.py": "from . import units\n\ndef f():\n    return units.K\n",
        "datasets/_shared/units.py": "K = 1\n",
        "datasets/_shared/unused.py": "X = 2\n",
        # beta imports a sibling module, relatively
        f"datasets/{B}/recipe.yaml": recipe(B, sample=True),
        f"datasets/{B}/transform.py": "from .cleaning import clean\n\ndef build(ctx):\n    clean()\n",
        f"datasets/{B}/cleaning.py": "def clean():\n    return None\n",
        # gamma imports nothing from the repo
        f"datasets/{C}/recipe.yaml": recipe(C),
        f"datasets/{C}/transform.py": "import json\n\ndef build(ctx):\n    json.dumps({})\n",
        f"datasets/{C}/sources/s.csv": "a\n1\n",
        f"releases/{C}/1.0.0.json": "{}\n",
    })
    commit(root, "base")
    return root


def change(repo: Path, files: dict[str, str | None]) -> dict[str, object]:
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    write(repo, files)
    commit(repo, "change")
    return plan(repo, base).to_json()


def test_recipe_change_touches_only_that_dataset(repo: Path) -> None:
    p = change(repo, {f"datasets/{C}/recipe.yaml": recipe(C, "1.1.0")})
    assert p["datasets"] == [C] and p["all"] is False and p["deleted"] == []
    assert p["release"] == [A, B, C]  # 1.1.0 has no record; alpha and beta never released


def test_any_file_in_dataset_folder_touches_it(repo: Path) -> None:
    p = change(repo, {f"datasets/{C}/sources/s.csv": "a\n2\n"})
    assert p["datasets"] == [C]


def test_released_version_is_not_in_release(repo: Path) -> None:
    p = change(repo, {"README.md": "changed\n"})
    assert p["datasets"] == [] and p["release"] == [A, B]


@pytest.mark.parametrize("path", [
    "scripts/d4c/__init__.py", "docker/Dockerfile", "schemas/recipe.schema.json",
    "pyproject.toml", "requirements.lock", "requirements-dev.lock",
])
def test_shared_code_touches_every_dataset(repo: Path, path: str) -> None:
    p = change(repo, {path: "changed\n"})
    assert p["datasets"] == [A, B, C] and p["all"] is True


def test_helper_imported_transitively_touches_only_its_user(repo: Path) -> None:
    # edge-only change: nothing in alpha's folder changed, only a module its helper imports
    p = change(repo, {"datasets/_shared/units.py": "K = 1000\n"})
    assert p["datasets"] == [A] and p["all"] is False


def test_unimported_helper_touches_nothing(repo: Path) -> None:
    p = change(repo, {"datasets/_shared/unused.py": "X = 3\n"})
    assert p["datasets"] == []


def test_new_helper_import_is_followed_at_head(repo: Path) -> None:
    p = change(repo, {
        f"datasets/{C}/transform.py": "from _shared import unused\n\ndef build(ctx):\n    pass\n",
        "datasets/_shared/unused.py": "X = 4\n",
    })
    assert p["datasets"] == [C]
    p2 = change(repo, {"datasets/_shared/unused.py": "X = 5\n"})
    assert p2["datasets"] == [C]


def test_relative_sibling_import(repo: Path) -> None:
    p = change(repo, {f"datasets/{B}/cleaning.py": "def clean():\n    return 1\n"})
    assert p["datasets"] == [B]
    assert p["matrix"] == [{"dataset": B, "version": "1.0.0", "cache_key": p["matrix"][0]["cache_key"],  # type: ignore[index]
                            "sample": True, "runs_on": ["ubuntu-24.04"], "shards": 0}]
    assert p["jobs"] == {"build": [{**p["matrix"][0], "chunk": 1}], "image": [], "shard": [], "reduce": []}  # type: ignore[index,dict-item]


def test_new_dataset_is_touched_and_needs_release(repo: Path) -> None:
    new = "ca_test_delta"
    p = change(repo, {f"datasets/{new}/recipe.yaml": recipe(new)})
    assert p["datasets"] == [new] and new in p["release"]
    assert p["matrix"][0]["cache_key"].startswith("d4c-sources-")  # type: ignore[index]
    assert [r["dataset"] for r in p["release_matrix"]] == p["release"]  # type: ignore[attr-defined]


def test_cache_key_follows_source_hash(repo: Path) -> None:
    before = change(repo, {f"datasets/{A}/transform.py": "def build(ctx):\n    pass\n"})
    after = change(repo, {f"datasets/{A}/recipe.yaml": recipe(A, sha="b" * 64)})
    same = change(repo, {f"datasets/{A}/recipe.yaml": recipe(A, version="1.0.1", sha="b" * 64)})
    keys = [x["matrix"][0]["cache_key"] for x in (before, after, same)]  # type: ignore[index]
    assert keys[0] != keys[1] and keys[1] == keys[2]


def test_deleted_unreleased_dataset_is_reported(repo: Path) -> None:
    p = change(repo, {f"datasets/{B}/recipe.yaml": None, f"datasets/{B}/transform.py": None,
                      f"datasets/{B}/cleaning.py": None})
    assert p["deleted"] == [B] and B not in p["datasets"] and B not in p["release"]


def test_deleting_released_dataset_is_an_error(repo: Path) -> None:
    with pytest.raises(D4CError, match=f"datasets/{C}: a published dataset was deleted"):
        change(repo, {f"datasets/{C}/recipe.yaml": None, f"datasets/{C}/transform.py": None,
                      f"datasets/{C}/sources/s.csv": None, f"releases/{C}/1.0.0.json": None})


def test_deleting_a_release_record_is_an_error(repo: Path) -> None:
    with pytest.raises(D4CError, match="release record was deleted"):
        change(repo, {f"releases/{C}/1.0.0.json": None})


def test_cli_json_and_errors(repo: Path, tmp_path: Path) -> None:
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    write(repo, {f"datasets/{C}/recipe.yaml": recipe(C, "2.0.0")})
    commit(repo, "bump")
    out = tmp_path / "gh_output"
    env = {**os.environ, "D4C_REPO": str(repo), "GITHUB_OUTPUT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "d4c", "plan", "--base", base, "--github-output"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["datasets"] == [C]
    lines = out.read_text().splitlines()
    assert lines[0] == f"json={proc.stdout.strip()}" and "any=true" in lines
    assert {"any_build=true", "any_shard=false", "any_release_build=true", "any_release_shard=false"} <= set(lines)
    bad = subprocess.run([sys.executable, "-m", "d4c", "plan", "--base", "no-such-ref"],
                         capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "unknown git ref 'no-such-ref'" in bad.stderr


def test_broken_transform_is_one_line(repo: Path) -> None:
    with pytest.raises(D4CError, match=rf"datasets/{A}/transform.py:1: cannot parse Python"):
        change(repo, {f"datasets/{A}/transform.py": "def (:\n"})  # touched directly: not parsed
        change(repo, {"datasets/_shared/units.py": "K = 2\n"})


def test_null_base_is_a_first_push(repo: Path) -> None:
    p = plan(repo, "0" * 40).to_json()
    assert p["datasets"] == [A, B, C] and p["all"] is True and p["release"] == [A, B]


def test_released_records_for_verify(repo: Path) -> None:
    from catalog_factory import make_record
    from d4c.plan import released

    first = make_record(C, "1.0.0")
    first["manifest"]["code"]["commit"] = "f" * 40
    write(repo, {f"releases/{C}/1.0.0.json": json.dumps(first),
                 f"releases/{C}/1.1.0.json": json.dumps(make_record(C, "1.1.0"))})  # outside git
    every = released(repo, "all")
    assert every["records"] == [f"releases/{C}/1.0.0.json", f"releases/{C}/1.1.0.json"]
    assert every["matrix"][0] == {"record": f"releases/{C}/1.0.0.json", "dataset": C,
                                  "version": "1.0.0", "commit": "f" * 40}
    assert released(repo, C)["records"] == every["records"]
    assert released(repo, f"{C}/1.1.0")["matrix"][0]["commit"] == ""
    with pytest.raises(D4CError, match="no release record matches"):
        released(repo, f"{A}/9.9.9")
    for bad in ("../etc/passwd", "*", f"{C}/../../x"):
        with pytest.raises(D4CError, match="not a release selector"):
            released(repo, bad)


def sharded(ds: str, count: int, runs_on: str = "") -> str:
    return recipe(ds) + f"shards:\n  by: source_file\n  max: {count}\nreduce:\n  method: concat\n" + runs_on


def test_sharded_recipes_fan_out_into_shard_and_reduce_jobs(repo: Path) -> None:
    p = change(repo, {f"datasets/{A}/recipe.yaml": sharded(A, 3, "runs_on: [self-hosted, linux, big-disk]\n")})
    jobs = p["jobs"]
    assert jobs["build"] == [] and [r["dataset"] for r in jobs["reduce"]] == [A]  # type: ignore[index]
    (row,) = jobs["reduce"]  # type: ignore[index]
    assert row["shards"] == 3 and row["runs_on"] == ["self-hosted", "linux", "big-disk"]
    shard_rows = jobs["shard"]  # type: ignore[index]
    assert [(r["shard"], r["shard_index"]) for r in shard_rows] == [("1/3", 1), ("2/3", 2), ("3/3", 3)]
    assert all(r["runs_on"] == row["runs_on"] and r["dataset"] == A for r in shard_rows)
    assert len({r["cache_key"] for r in shard_rows}) == 3 and all(
        r["cache_key"].startswith(row["cache_key"] + "-shard-") for r in shard_rows)
    assert [r["dataset"] for r in p["release_jobs"]["reduce"]] == [A]  # type: ignore[index]
    assert [r["dataset"] for r in p["release_jobs"]["build"]] == [B]  # type: ignore[index]


def _cli(repo: Path, *args: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "D4C_REPO": str(repo), **({"GITHUB_OUTPUT": str(out)} if out else {})}
    return subprocess.run([sys.executable, "-m", "d4c", "plan", *args], capture_output=True, text=True,
                          env=env, check=False)


def test_past_one_matrix_the_jobs_are_cut_into_chunks_one_run_each(repo: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from d4c.cli import main

    monkeypatch.setenv("D4C_REPO", str(repo))
    base = commit(repo, "before")
    p = change(repo, {f"datasets/{A}/recipe.yaml": sharded(A, 200), f"datasets/{B}/recipe.yaml": sharded(B, 100)})
    jobs = p["release_jobs"]
    assert p["chunks"] == p["release_chunks"] == 2 and len(jobs["shard"]) == 300  # type: ignore[index,arg-type]
    chunk_of = [(r["dataset"], r["shard_index"], r["chunk"], r["image_chunk"]) for r in jobs["shard"]]  # type: ignore[index]
    assert chunk_of == [(A, i, 1, 1) for i in range(1, 201)] + [(B, i, 1, 1) for i in range(1, 57)] + \
        [(B, i, 2, 1) for i in range(57, 101)]  # rows 1..256 in chunk 1, in plan order
    assert [(r["dataset"], r["chunk"]) for r in jobs["image"]] == [(A, 1), (B, 1)]  # type: ignore[index]
    # a reduce runs in the chunk of its dataset's last shard, and takes the earlier ones from image_chunk's run
    assert [(r["dataset"], r["chunk"], r["image_chunk"]) for r in jobs["reduce"]] == [(A, 1, 1), (B, 2, 1)]  # type: ignore[index]
    for k, released, shards, image in ((1, [A], 256, [A, B]), (2, [B], 44, [])):
        out = tmp_path / f"out{k}"
        ids = "" if k == 1 else json.dumps({B: "sha256:" + "f" * 64})  # the run before's image job output
        proc = _cli(repo, "--base", base, "--chunk", str(k), "--previous-run", "" if k == 1 else "123",
                    "--images", ids, "--github-output", out=out)
        assert proc.returncode == 0, proc.stderr
        run = json.loads(proc.stdout)
        assert run["chunk"] == k and [r["dataset"] for r in run["release_matrix"]] == released
        assert len(run["release_jobs"]["shard"]) == shards and [r["dataset"] for r in run["release_jobs"]["image"]] == image
        lines = set(out.read_text().splitlines())
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        assert {f"chunk={k}", f"commit={head}", f"next_chunk={'2' if k == 1 else ''}",
                f"previous_run={'' if k == 1 else '123'}",
                "images=" + ("{}" if k == 1 else json.dumps(json.loads(ids), separators=(",", ":")))} <= lines
        assert ("any_release_image=true" in lines) == (k == 1)
        assert _cli(repo, "--base", base, "--chunk", str(k), "--previous-run", "" if k == 1 else "123",
                    "--images", ids).stdout == \
            proc.stdout  # the same plan, the same bytes: every run of the chain cuts it alike
    for args, said in ((["--chunk", "3", "--previous-run", "9"], "chunk 3: this plan has 2 chunk(s)"),
                       (["--chunk", "2"], "--chunk 2 needs --previous-run"),
                       (["--chunk", "2", "--previous-run", "1; x"], "not a workflow run id"),
                       (["--chunk", "2", "--previous-run", "1", "--images", '{"a": "x"}'], "not a JSON map of dataset"),
                       (["--single-run"], "the change needs 2 runs of at most 256 jobs per matrix (300 shard jobs")):
        assert main(["plan", "--base", base, *args]) in (1, 2)  # in-process: the same one-line errors, faster
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("labels", ["[\"ubuntu-latest; curl x | sh\"]", "'${{ secrets.X }}'", "[]",
                                    "[a, a]", "[\"x\\ny\"]", "[" + ", ".join(f"l{i}" for i in range(9)) + "]"])
def test_runs_on_is_checked_before_it_reaches_a_workflow(repo: Path, labels: str) -> None:
    with pytest.raises(D4CError, match=rf"datasets/{A}/recipe.yaml: `runs_on` must be a list of 1 to 8"):
        change(repo, {f"datasets/{A}/recipe.yaml": recipe(A) + f"runs_on: {labels}\n"})


def test_the_schema_takes_the_labels_the_plan_takes() -> None:
    from d4c import schemas
    from d4c.recipe import load

    doc = load(Path(__file__).resolve().parent.parent / "datasets" / "ca_d4c_capitals" / "recipe.yaml").data
    assert schemas.errors("recipe", {**doc, "runs_on": ["self-hosted", "linux", "big-disk.2"]}) == []
    for bad in (["a b"], ["${{ github.token }}"], [], ["x", "x"], ["-x"]):
        assert schemas.errors("recipe", {**doc, "runs_on": bad}), bad


def test_chunks_of_whole_builds_and_shards_are_cut_alike_and_a_dataset_spans_at_most_two() -> None:
    from d4c import fanout

    def row(ds: str, shards: int) -> dict[str, object]:
        return {"dataset": ds, "version": "1.0.0", "cache_key": "k", "sample": False, "runs_on": ["x"],
                "shards": shards}

    rows = [row(f"ca_w_{i:03}", 0) for i in range(300)] + [row(f"ca_s_{i}", n) for i, n in
                                                           enumerate([255, 256, 3, 256, 1, 200])]
    jobs = fanout.jobs(rows)  # type: ignore[arg-type]
    assert [r["chunk"] for r in jobs["build"]] == [1] * 256 + [2] * 44 and fanout.chunks(jobs) == 4
    assert len(jobs["shard"]) == 971 and all(len(fanout.in_chunk(jobs, k)[j]) <= 256 for k in (1, 2, 3, 4)
                                              for j in ("build", "image", "shard", "reduce"))
    for r in jobs["reduce"]:
        spans = {s["chunk"] for s in jobs["shard"] if s["dataset"] == r["dataset"]}
        assert spans in ({r["chunk"]}, {r["chunk"] - 1, r["chunk"]}) and r["image_chunk"] == min(spans)
    assert fanout.built_in(jobs, 4) == {"ca_s_3", "ca_s_4", "ca_s_5"} and fanout.jobs(rows) == jobs  # type: ignore[arg-type]
