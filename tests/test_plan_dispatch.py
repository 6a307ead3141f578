"""Hostile workflow_dispatch inputs of release.yml: the plan job checks out `inputs.commit`
before d4c runs, so `d4c plan --commit` refuses anything but HEAD's 40-hex sha on the
branch the run is on (a branch, tag or pull request ref would be built and released),
and no input with a trailing newline passes a check (`$` matches before one)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from d4c.cli import main
from d4c.errors import D4CError
from fakes.github_actions import FakeActions
from test_chain import COMMIT, TOKEN, _declared, _release
from test_plan import GIT, commit, repo  # noqa: F401 - the fixture
from test_workflow_shards import step

REPO = Path(__file__).resolve().parent.parent


def _plan_step(root: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """release.yml's plan step as a dispatched run runs it, in `root` checked out at HEAD."""
    script = step(_release()["jobs"]["plan"], "d4c plan")["run"]
    values = {"BEFORE": "0" * 40, "CHUNK": "1", "PREVIOUS_RUN": "", "IMAGES": "", "COMMIT": "", "REF": "main",
              "D4C_REPO": str(root), "GITHUB_OUTPUT": str(out), **env}
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **values}, check=False, timeout=120)


def test_the_dispatched_commit_must_be_head_on_the_branch(repo: Path, tmp_path: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    (repo / "README.md").write_text("changed\n")
    head = commit(repo, "change")
    subprocess.run([*GIT, "update-ref", "refs/remotes/origin/main", head], cwd=repo, check=True)
    subprocess.run([*GIT, "update-ref", "refs/remotes/origin/old", base], cwd=repo, check=True)
    out = tmp_path / "out"
    proc = _plan_step(repo, out, COMMIT=head)  # the workflow's own step: the chain's commit passes
    assert proc.returncode == 0 and f"commit={head}" in out.read_text().splitlines(), proc.stderr
    proc = _plan_step(repo, out, COMMIT="main")  # and a branch name given as the commit does not
    assert proc.returncode == 2 and "--commit 'main' is not the commit checked out" in proc.stderr, proc.stderr
    monkeypatch.setenv("D4C_REPO", str(repo))  # the other refusals in-process: the same lines, faster
    for given, on, said in (("", "origin/main", None), (head, "origin/main", None),
                            ("refs/pull/7/head", "origin/main", "is not the commit checked out"),
                            (head.upper(), "", "is not the commit"), (head + "\n", "", "is not the commit"),
                            (base, "origin/main", "is not the commit checked out"),
                            (head, "origin/old", f"--commit {head} is not on origin/old"),
                            (head, "origin/gone", "unknown git ref 'origin/gone'")):
        code = main(["plan", "--base", "0" * 40, "--chunk", "1", "--commit", given, "--commit-on", on])
        err = capsys.readouterr().err.strip()
        if said is None:
            assert code == 0, (given, err)
        else:
            assert code in (1, 2) and said in err and len(err.splitlines()) == 1, (given, err)
    assert main(["plan", "--base", "0" * 40, "--chunk", "2", "--previous-run", "123\n"]) == 2
    assert "not a workflow run id" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,said", [
    ("--commit", COMMIT + "\n", "--commit"), ("--base", "b" * 40 + "\n", "--base"),
    ("--images", '{"ca_test_big":"sha256:%s\\n"}' % ("e" * 64), "is not a JSON map of dataset id"),
    ("--images", '{"ca_test_big\\n":"sha256:%s"}' % ("e" * 64), "is not a JSON map of dataset id"),
    ("GITHUB_RUN_ID", "4242\n", "$GITHUB_RUN_ID is not what GitHub Actions sets"),
])
def test_a_trailing_newline_passes_no_check_of_the_chain(flag: str, value: str, said: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--workflow": "release.yml", "--ref": "main", "--chunk": "2", "--commit": COMMIT, "--base": "b" * 40,
            "--images": ""}
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "dataforcanada/d4c", "GITHUB_RUN_ID": "4242"}
    (args if flag.startswith("--") else env)[flag] = value
    with FakeActions(TOKEN, {"release.yml": _declared()}, {"main"}) as fake:
        for name, v in {**env, "GITHUB_API_URL": fake.url}.items():
            monkeypatch.setenv(name, v)
        assert main(["chain", *(x for kv in args.items() for x in kv)]) in (1, 2)
        assert fake.runs == []
    err = capsys.readouterr().err.strip()
    assert said in err and len(err.splitlines()) == 1 and TOKEN not in err, err


def test_the_previous_run_must_be_a_run_of_release_yml_on_the_branch(repo: Path, tmp_path: Path,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A pull request's run (pr.yml, a fork's code) uploads `image` and `shard.<id>.<n>`
    artifacts too: a dispatch naming it as previous_run would release what it built."""
    plan = _release()["jobs"]["plan"]
    assert plan["permissions"] == {"contents": "read", "actions": "read"}
    assert step(plan, "d4c plan")["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "dataforcanada/d4c"}
    with FakeActions(TOKEN, {"release.yml": _declared()}, {"main"}) as fake:
        fake.add_run("77")
        fake.add_run("78", workflow="pr.yml", event="pull_request", branch="patch-1", head_repo="evil/d4c")
        fake.add_run("79", workflow="pr.yml")
        fake.add_run("80", branch="feature")
        fake.add_run("81", event="pull_request_target")
        proc = _plan_step(repo, tmp_path / "out", PREVIOUS_RUN="78", GITHUB_API_URL=fake.url, **env)
        assert proc.returncode == 1 and "--previous-run 78 is a pull_request run of .github/workflows/pr.yml on " \
            "evil/d4c:patch-1, not a run of release.yml on main" in proc.stderr, proc.stderr
        for name, value in {**env, "D4C_REPO": str(repo), "GITHUB_API_URL": fake.url}.items():
            monkeypatch.setenv(name, value)
        for run_id, of, said in (("77", "release.yml@main", None),
                                 ("79", "release.yml@main", "run of .github/workflows/pr.yml"),
                                 ("80", "release.yml@main", "on dataforcanada/d4c:feature, not"),
                                 ("81", "release.yml@main", "is a pull_request_target run"),
                                 ("82", "release.yml@main", "GitHub answered 404 for the run"),
                                 ("77", "release.yml", "not WORKFLOW@BRANCH")):
            code = main(["plan", "--base", "0" * 40, "--chunk", "1", "--previous-run", run_id, "--previous-run-of", of])
            err = capsys.readouterr().err.strip()
            if said is None:
                assert code == 0, err
            else:
                assert code in (1, 2) and said in err and len(err.splitlines()) == 1 and TOKEN not in err, err


@pytest.mark.parametrize("folder", ["*", "Evil $(id)", "ca_x\n"])
def test_a_dataset_folder_that_is_not_an_id_never_reaches_a_matrix(repo: Path, folder: str) -> None:  # noqa: F811
    """`shard.${{ matrix.dataset }}.*` is a download pattern: a folder `*` would take every
    dataset's shards; the plan refuses the name (a pull request's plan too)."""
    from test_plan import change, recipe

    with pytest.raises(D4CError, match=r"a dataset folder is named with a-z, 0-9, _ and - only"):
        change(repo, {f"datasets/{folder}/recipe.yaml": recipe("ca_x")})


@pytest.mark.parametrize("version", ["1.0.0/../../../.venv/bin", "null"])
def test_a_version_that_is_not_semver_never_reaches_a_matrix(repo: Path, version: str) -> None:  # noqa: F811
    """The release job downloads the build to `.d4c/build/${{ matrix.dataset }}/v${{ matrix.version }}`:
    a version with `../` would unpack the build's files over the job's own tools."""
    from test_plan import change, recipe

    text = recipe("ca_x").replace("version: 1.0.0", f"version: {version}")
    with pytest.raises(D4CError, match=r"datasets/ca_x/recipe.yaml: version .* is not SemVer"):
        change(repo, {"datasets/ca_x/recipe.yaml": text})
