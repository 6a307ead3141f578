"""Torrents, the source bundle and the targets config: the release's local pieces."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import torf
from d4c.digest import digest_file
from d4c.errors import D4CError
from d4c.redact import redact
from d4c.release import config
from d4c.release.bundle import extract_bundle, make_bundle
from d4c.release.torrent import make_torrent

PIECE = 32 * 1024


def _output(path: Path, piece: int = PIECE) -> dict[str, object]:
    d = digest_file(path, piece)
    return {"file": path.name, "size": d.size, "sha256": d.sha256, "piece_size": piece,
            "pieces_sha1": d.pieces_sha1}


def test_torrent_from_manifest_pieces_validates_against_the_file(tmp_path: Path) -> None:
    art = tmp_path / "ca_x_v1.0.0.parquet"
    art.write_bytes(os.urandom(5 * PIECE + 77))
    seeds = ["https://a.example/ca_x/v1.0.0/ca_x_v1.0.0.parquet",
             "https://b.example/files/ca%20x.parquet?download=1"]
    info = make_torrent(art, _output(art), tmp_path / "a.torrent", seeds, ["udp://t.example:6969"])
    t = torf.Torrent.read(info.torrent_path)
    assert t.verify(art)  # torf re-hashes the file against our pieces
    assert t.infohash == info.infohash and t.piece_size == PIECE
    assert t.creation_date is None and t.created_by == "d4c" and "private" not in t.metainfo["info"]
    assert list(t.webseeds) == seeds  # used as-is: no `+` for spaces, no name appended
    assert "ws=" in info.magnet and info.magnet.startswith(f"magnet:?xt=urn:btih:{info.infohash}")
    # same inputs, same bytes; mirrors change the bytes but never the infohash
    again = make_torrent(art, _output(art), tmp_path / "b.torrent", seeds, ["udp://t.example:6969"])
    assert again.torrent_path.read_bytes() == info.torrent_path.read_bytes()
    fewer = make_torrent(art, _output(art), tmp_path / "c.torrent", seeds[:1], [])
    assert fewer.infohash == info.infohash
    # a stale manifest (wrong piece hashes) gives a torrent torf rejects for this file
    bad = dict(_output(art), pieces_sha1="00" * 20 * 6)
    stale = torf.Torrent.read(make_torrent(art, bad, tmp_path / "d.torrent", [], []).torrent_path)
    with pytest.raises(torf.VerifyContentError):
        stale.verify(art)
    with pytest.raises(D4CError, match="piece hashes"):
        make_torrent(art, dict(_output(art), pieces_sha1="00" * 20), tmp_path / "e.torrent", [], [])


def _tree(root: Path) -> Path:
    rdir = root / "datasets" / "ca_x"
    for rel, text in [("datasets/ca_x/recipe.yaml", "id: ca_x\n"), ("datasets/ca_x/transform.py", "x=1\n"),
                      ("datasets/ca_y/recipe.yaml", "id: ca_y\n"), ("scripts/d4c/a.py", "a\n"),
                      ("scripts/d4c/__pycache__/a.cpython-311.pyc", "junk"), ("docker/Dockerfile", "FROM x\n"),
                      ("scripts/d4c/schemas/s.json", "{}\n"), ("pyproject.toml", "[x]\n"), ("Makefile", "all:\n"),
                      ("requirements.lock", "a==1\n"), ("requirements-dev.in", "b\n"), ("README.md", "no\n")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    os.chmod(root / "scripts/d4c/a.py", 0o700)
    return rdir


def test_bundle_is_deterministic_and_holds_what_a_rebuild_needs(tmp_path: Path) -> None:
    root = tmp_path / "r"
    rdir = _tree(root)
    manifest = json.dumps({"manifest_version": 1}).encode()
    make_bundle(root, rdir, manifest, tmp_path / "a.tar.gz", "ca_x_v1.0.0_source", 1767225600)
    os.utime(root / "Makefile", (1, 1))  # other mtimes and umask must not matter
    os.chmod(root / "docker/Dockerfile", 0o600)
    make_bundle(root, rdir, manifest, tmp_path / "b.tar.gz", "ca_x_v1.0.0_source", 1767225600)
    raw = (tmp_path / "a.tar.gz").read_bytes()
    assert raw == (tmp_path / "b.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # gzip: mtime 0, no file name
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    names = [m.name.split("/", 1)[1] for m in members]
    assert names == sorted(names)
    assert set(names) == {"Makefile", "datasets/ca_x/recipe.yaml", "datasets/ca_x/transform.py",
                          "docker/Dockerfile", "manifest.json", "pyproject.toml", "requirements-dev.in",
                          "requirements.lock", "scripts/d4c/a.py",
                          "scripts/d4c/schemas/s.json"}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1767225600)
        assert m.mode == (0o755 if m.name.endswith("a.py") else 0o644)
    top = extract_bundle(tmp_path / "a.tar.gz", tmp_path / "out")
    assert (top / "manifest.json").read_bytes() == manifest
    assert (top / "datasets/ca_x/transform.py").read_text() == "x=1\n"


def test_bundle_in_a_git_repo_leaves_out_ignored_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    rdir = _tree(root)
    (root / ".gitignore").write_text("*.secret\n")
    (root / "scripts/d4c/token.secret").write_text("nope")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    make_bundle(root, rdir, b"{}", tmp_path / "a.tar.gz", "top", 0)
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert not [n for n in tar.getnames() if "secret" in n or "__pycache__" in n]


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "two-tops"])
def test_extract_bundle_refuses_unsafe_archives(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("top/manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
        if kind == "dotdot":
            evil = tarfile.TarInfo("top/../../evil")
            evil.size = 1
            tar.addfile(evil, io.BytesIO(b"x"))
        elif kind == "symlink":
            link = tarfile.TarInfo("top/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        else:
            other = tarfile.TarInfo("other/x")
            other.size = 1
            tar.addfile(other, io.BytesIO(b"x"))
    with pytest.raises(D4CError):
        extract_bundle(bad, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_default_config_is_one_local_source_mirror(tmp_path: Path) -> None:
    cfg = config.load(None, tmp_path)
    (t,) = cfg.targets
    assert (t.kind, t.retain, t.source_mirror) == ("local", "all", True)
    assert t.options["path"] == str(tmp_path / ".d4c" / "publish")


def test_config_errors_are_one_line_with_the_place(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    bad = tmp_path / "t.yaml"
    bad.write_text("targets:\n  - {name: a, kind: ftp}\n")
    with pytest.raises(D4CError, match=r"targets/0/kind") as exc:
        config.load(bad, root)
    assert "\n" not in exc.value.line() and str(bad) in exc.value.line()
    bad.write_text("targets:\n  - {name: a, kind: local}\n  - {name: a, kind: local}\n")
    with pytest.raises(D4CError, match="duplicate target name 'a'"):
        config.load(bad, root)
    bad.write_text("targets: [\n")
    with pytest.raises(D4CError, match="not valid YAML"):
        config.load(bad, root)
    bad.write_text("targets:\n  - {name: s, kind: s3, url: 'https://x/{key}', options: {}}\n")
    with pytest.raises(D4CError, match="bucket"):
        config.load(bad, root)


@pytest.mark.parametrize(("text", "where", "guess"), [
    ("targets:\n  - {name: a, kind: local, retian: latest}\n", "targets/0", "'retian'; did you mean 'retain'?"),
    ("journl: {target: a}\ntargets:\n  - {name: a, kind: local}\n", "(top level)",
     "'journl'; did you mean 'journal'?"),
    ("targets:\n  - {name: s, kind: s3, url: 'https://x/{key}', options: {bucket: bkt, multipart_chunksiz: 6000000}}\n",
     "targets/0/options", "'multipart_chunksiz'; did you mean 'multipart_chunksize'?"),  # was silently ignored
    ("targets:\n  - {name: a, kind: local, zzqqx: 1}\n", "targets/0", "'zzqqx' (known: credentials, kind,"),
])
def test_a_mistyped_key_is_one_line_with_the_nearest_known_key(tmp_path: Path, text: str, where: str,
                                                                guess: str) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(text)
    with pytest.raises(D4CError) as exc:
        config.load(bad, tmp_path)
    line = exc.value.line()
    assert f"targets config: {where}: unknown key {guess}" in line and str(bad) in line and "\n" not in line


@pytest.mark.parametrize(("size", "bound"), [(5 * 2**30 + 1, "greater than the maximum of 5368709120"),
                                           (5 * 2**20 - 1, "less than the minimum of 5242880")])
def test_multipart_chunksize_is_within_s3s_part_sizes(tmp_path: Path, size: int, bound: str) -> None:
    bad = tmp_path / "t.yaml"
    text = "targets:\n  - {name: s, kind: s3, url: 'https://x/{key}', options: {bucket: bkt, multipart_chunksize: %d}}\n"
    bad.write_text(text % size)
    with pytest.raises(D4CError) as exc:
        config.load(bad, tmp_path)
    assert f"targets/0/options/multipart_chunksize: {size} is {bound}" in exc.value.line()
    assert "S3 takes 5 MiB (5242880) to 5 GiB (5368709120)" in exc.value.line()
    bad.write_text(text % (5 * 2**30))  # the largest part S3 takes
    assert config.load(bad, tmp_path).targets[0].options["multipart_chunksize"] == 5 * 2**30


def test_config_registers_credential_variables_as_secrets(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_TEST_CANARY_TOKEN", "canary-7f3a9-value")
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("targets:\n  - name: s\n    kind: s3\n    url: 'https://x/{key}'\n"
                        "    credentials: {secret_access_key: D4C_TEST_CANARY_TOKEN}\n"
                        "    options: {bucket: bkt, endpoint_url: 'http://127.0.0.1:9'}\n"
                        "    layout: 'dataforcanada/{id}/processed/{file}'\n    retain: latest\n")
    cfg = config.load(cfg_file, Path(__file__).resolve().parent.parent)
    assert cfg.credential_vars == ("D4C_TEST_CANARY_TOKEN",)
    assert cfg.targets[0].layout == "dataforcanada/{id}/processed/{file}"
    assert redact("key canary-7f3a9-value in a message") == "key *** in a message"


@pytest.mark.parametrize(("kind", "role", "guess"), [
    ("s3", "acces_key_id", "did you mean 'access_key_id'?"),
    ("zenodo", "tokn", "did you mean 'token'?"),
    ("local", "token", "a local target reads no credential")])
def test_a_mistyped_credential_role_is_one_line(tmp_path: Path, kind: str, role: str, guess: str) -> None:
    """It was taken, and the plan then asked for the default variable the operator never set."""
    from d4c.release.targets import make_target

    opts = {"s3": "url: 'https://x/{key}', options: {bucket: bkt}", "zenodo": "",
            "local": "options: {path: pub}"}[kind]
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text(f"targets:\n  - {{name: t, kind: {kind}, credentials: {{{role}: MY_VAR}}, {opts}}}\n"
                        .replace(", }", "}"))
    cfg = config.load(cfg_file, tmp_path)
    with pytest.raises(D4CError) as exc:
        make_target(cfg.targets[0], environ={})
    assert f"target 't': unknown credential role {role!r}; {guess}" in exc.value.line()
    assert "\n" not in exc.value.line()
