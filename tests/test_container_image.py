"""`--save-image` / `--load-image`: CI builds a recipe's image once and every shard job loads
that very image (same id), since the reduce refuses shards that ran in different images.
Real podman, a small image on the locally made base (tests/test_container_build.py)."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from d4c.build.runners import container
from d4c.build.runners import image as container_image
from d4c.cli import main
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
