"""`--save-image` / `--load-image`: CI builds a recipe's image once and every shard job loads
that very image (same id), since the reduce refuses shards that ran in different images.
Real podman, a small image on the locally made base (tests/test_container_build.py)."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from d4c.build.runners import container
from d4c.build.runners import image as container_image
from d4c.cli import main
from d4c.commands import build as build_command
from d4c.errors import D4CError
from d4c.recipe import load_id
from test_container_build import prepare_podman

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = "ARG BASE_IMAGE=localhost/d4c-bookworm-min\nFROM ${{BASE_IMAGE}}\nLABEL org.dataforcanada.test={label}\n"


def test_saved_image_loads_with_its_id_and_a_stale_one_is_refused(
        require_tool: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    podman = prepare_podman(require_tool, monkeypatch, tmp_path)
    dockerfile = tmp_path / "small.Dockerfile"
    dockerfile.write_text(DOCKERFILE.format(label="one"))
    rec = load_id("ca_d4c_provinces-territories", REPO)
    rec = replace(rec, data={**rec.data, "environment": str(dockerfile)})  # an absolute path wins over the root
    archive = tmp_path / "image" / "small.tar"
    image = container_image.save_image(REPO, rec, archive)
    tag = container.image_tag(REPO, dockerfile)
    env = {**os.environ}
    subprocess.run([podman, "rmi", "--force", tag], env=env, check=True, capture_output=True)
    assert subprocess.run([podman, "image", "exists", tag], env=env, check=False).returncode == 1
    assert container_image.load_image(REPO, rec, archive) == image  # the very image, not a rebuild
    dockerfile.write_text(DOCKERFILE.format(label="two"))  # another commit's image: refused,
    container_image.save_image(REPO, rec, tmp_path / "two.tar")  # also when that one is here already
    with pytest.raises(D4CError, match=r"does not hold localhost/d4c-build:\w+, the image of small.Dockerfile"):
        container_image.load_image(REPO, rec, archive)
    subprocess.run([podman, "rmi", "--force", container.image_tag(REPO, dockerfile)], env=env, check=False,
                   capture_output=True)
    (tmp_path / "junk.tar").write_bytes(b"not an image")
    with pytest.raises(D4CError, match="not a loadable image archive"):
        container_image.load_image(REPO, rec, tmp_path / "junk.tar")
    subprocess.run([podman, "rmi", "--force", tag], env=env, check=False, capture_output=True)


def test_image_flags_need_the_container_runner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "ca_d4c_provinces-territories", "--save-image", "x.tar"]) == 2
    assert "--save-image and --load-image are for --runner container" in capsys.readouterr().err


def test_the_image_jobs_ids_are_the_only_archives_shard_jobs_take(
        require_tool: Callable[..., str], repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`d4c images` (the CI image job) records each archive's image id as the job output `ids`;
    `d4c build --load-image FILE --image-id ID` refuses, before loading, an archive holding another."""
    podman = prepare_podman(require_tool, monkeypatch, tmp_path)
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    ds = "ca_d4c_provinces-territories"
    (repo_copy / "docker" / "small.Dockerfile").write_text(DOCKERFILE.format(label="ids"))
    path = repo_copy / "datasets" / ds / "recipe.yaml"
    text = path.read_text()
    assert "\nenvironment: docker/Dockerfile\n" in text
    path.write_text(text.replace("\nenvironment: docker/Dockerfile\n", "\nenvironment: docker/small.Dockerfile\n"))
    out = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert main(["images", "--out", str(tmp_path / "image"), "--datasets", f'["{ds}"]', "--github-output"]) == 0
    (line,) = out.read_text().splitlines()
    ids = json.loads(line.removeprefix("ids="))
    rec = load_id(ds, repo_copy)
    tag = container.image_tag(repo_copy, container.dockerfile_of(repo_copy, rec))
    real = subprocess.run([podman, "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert line.startswith("ids={") and ids == {ds: f"sha256:{real.removeprefix('sha256:')}"}
    archive = tmp_path / "image" / f"{ds}.tar"
    build_command.expect_image(repo_copy, rec, archive, ids[ds])  # the image job's own archive passes
    other = "sha256:" + "0" * 64
    capsys.readouterr()
    assert main(["build", ds, "--runner", "container", "--load-image", str(archive), "--image-id", other]) == 1
    err = capsys.readouterr().err.strip()
    assert f"holds image {ids[ds]}, not {other}, the one the image job built (--image-id)" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for bad in ("", "latest", "sha256:" + "A" * 64):
        assert main(["build", ds, "--runner", "container", "--load-image", str(archive), "--image-id", bad]) == 2
        assert "is not an image id (sha256:<64 hex>)" in capsys.readouterr().err
    assert main(["build", ds, "--runner", "container", "--image-id", ids[ds]]) == 2
    assert "--image-id is for --load-image" in capsys.readouterr().err
    assert main(["images", "--out", str(tmp_path / "x"), "--datasets", '["../etc"]']) == 2
    assert "not a JSON list of distinct dataset ids" in capsys.readouterr().err
    subprocess.run([podman, "rmi", "--force", tag], check=False, capture_output=True)
