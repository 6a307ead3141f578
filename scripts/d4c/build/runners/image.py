"""The container image as a file: CI builds a recipe's image once (`--save-image`) and every
shard job loads it (`--load-image`), so all shards run the very same image id, which the
reduce requires. docs/scale.md.
"""
from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from d4c.build.runners.container import _engine_env, dockerfile_of, engine, ensure_image, image_tag
from d4c.errors import D4CError
from d4c.recipe import Recipe


def save_image(root: Path, recipe: Recipe, dest: Path) -> str:
    """Build the recipe's image (if needed) and save it, tag included, to `dest`: CI builds it
    once and every shard job loads it, so all shards run in the very same image (same id)."""
    exe = engine()
    env = _engine_env(root, exe)
    dockerfile = dockerfile_of(root, recipe)
    image = ensure_image(root, dockerfile, exe, env)
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "save", "-o", str(dest), image_tag(root, dockerfile)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise D4CError(f"saving the image to {dest} failed: {proc.stderr.strip()[-200:]}")
    return image


MANIFEST_MAX = 1 << 20  # a docker-archive's manifest.json lists a few images; more is not ours


def archived_ids(src: Path) -> dict[str, str]:
    """tag -> image id, from the archive's own manifest.json (docker-archive, as save_image
    writes it), read before anything is loaded: the tag must name the archive's image."""
    try:
        with tarfile.open(src) as tar:
            member = tar.getmember("manifest.json")
            if not member.isfile() or member.size > MANIFEST_MAX:
                raise KeyError("manifest.json")
            raw = tar.extractfile(member)
            entries = json.loads(raw.read() if raw else b"")
        ids: dict[str, str] = {}
        for entry in entries:
            image_id = "sha256:" + str(entry["Config"]).removeprefix("sha256:").removesuffix(".json")
            for tag in entry.get("RepoTags") or []:
                ids[str(tag)] = image_id
        return ids
    except (OSError, tarfile.TarError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise D4CError(f"{src}: not a loadable image archive (no readable manifest.json: {exc})",
                       hint="pass the file `d4c build ID --runner container --save-image FILE` wrote") from None


def load_image(root: Path, recipe: Recipe, src: Path) -> str:
    """Load an image saved by save_image; it must be this commit's image for the recipe, and
    the tag must then name the archive's image (not one already on this machine)."""
    exe = engine()
    env = _engine_env(root, exe)
    tag = image_tag(root, dockerfile_of(root, recipe))
    archived = archived_ids(src)
    if tag not in archived:
        raise D4CError(f"{src} does not hold {tag}, the image of {dockerfile_of(root, recipe).name} at this commit",
                       hint="save the image from the same commit (`d4c build ID --runner container --save-image FILE`)")
    proc = subprocess.run([exe, "load", "-i", str(src)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise D4CError(f"{src}: not a loadable image archive ({(proc.stderr.strip() or 'no reason given')[-200:]})",
                       hint="pass the file `d4c build ID --runner container --save-image FILE` wrote")
    out = subprocess.run([exe, "image", "inspect", "--format", "{{.Id}}", tag],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise D4CError(f"{src} does not hold {tag}, the image of {dockerfile_of(root, recipe).name} at this commit",
                       hint="save the image from the same commit (`d4c build ID --runner container --save-image FILE`)")
    found = out.stdout.strip()
    found = found if found.startswith("sha256:") else f"sha256:{found}"
    if found != archived[tag]:
        raise D4CError(f"{tag} is {found} after loading {src}, which holds {archived[tag]}",
                       hint="remove the local image (`podman rmi TAG`) and load the archive again")
    return found
