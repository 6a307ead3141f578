"""`d4c validate`: exit codes, output formats, cross-file and option behaviour, the registry."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from d4c.cli import main
from d4c.validate import LINTS, validate_paths
from d4c.validate.formats import github

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "datasets" / "ca_d4c_provinces-territories"


def dataset(root: Path, text: str | None = None, folder: str | None = None) -> Path:
    """A copy of a demo dataset under <root>/datasets/, optionally with another recipe text."""
    text = text if text is not None else (DEMO / "recipe.yaml").read_text()
    rid = re.search(r"^id: (\S+)", text, re.MULTILINE)
    dst = root / "datasets" / (folder or (rid.group(1) if rid else "ca_x"))
    shutil.copytree(DEMO, dst)
    (dst / "recipe.yaml").write_text(text)
    shutil.copytree(REPO / "docker", root / "docker", dirs_exist_ok=True)
    return dst / "recipe.yaml"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_repo_datasets_are_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "d4c", "validate"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr


def test_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace("license: CC-BY-4.0", "license: CC-BY")
    text = text.replace("  torrent: true", "  torrent: true\n  seeders: 3")
    text = text.replace("environment: docker/Dockerfile", "environment: docker/Nope.dockerfile")
    recipe = dataset(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    rel = str(recipe.relative_to(tmp_path))
    line = text.splitlines().index("license: CC-BY") + 1
    code, out, _ = cli(capsys, rel)
    assert code == 1
    assert f"{rel}:{line}:10: D4C401 `CC-BY` is not an SPDX license id" in out
    assert re.search(rf"^{re.escape(rel)}:\d+:3: D4C203 unknown key `distribution.seeders`", out, re.MULTILINE)
    code, out, _ = cli(capsys, "--format", "github", rel)
    assert code == 1
    assert f"::error file={rel},line={line},col=10,title=D4C401::`CC-BY` is not" in out
    assert re.search(r"^::error file=.*,title=D4C203::unknown key", out, re.MULTILINE)
    assert re.search(r"^::warning file=.*,title=D4C607::docker/Nope.dockerfile", out, re.MULTILINE)
    code, out, _ = cli(capsys, "--format", "json", rel)
    rows = json.loads(out)
    assert {(r["id"], r["severity"]) for r in rows} == {
        ("D4C401", "error"), ("D4C203", "error"), ("D4C607", "warning")}
    assert all(set(r) == {"path", "line", "col", "id", "severity", "message"} for r in rows)


def test_github_step_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "dataforcanada/d4c")
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    text = (DEMO / "recipe.yaml").read_text().replace("license: CC-BY-4.0", "license: A|B")
    recipe = dataset(tmp_path / "r", text)
    assert cli(capsys, "--format", "github", str(recipe))[0] == 1
    page = summary.read_text()
    assert page.startswith("earlier step\n### d4c validate: 1 error(s), 0 warning(s)\n")
    assert "| [D4C401](https://github.com/dataforcanada/d4c/blob/abc123/docs/lints.md#d4c401) | error | `A\\|B` is not an SPDX license id |" in page
    assert cli(capsys, "--format", "text", str(recipe))[0] == 1
    assert summary.read_text() == page  # only the github format writes a summary


def test_warnings_alone_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace("license: CC-BY-4.0", "license: GPL-2.0")
    code, out, _ = cli(capsys, str(dataset(tmp_path, text)))
    assert code == 0
    assert "D4C402 SPDX has deprecated `GPL-2.0`" in out and "(warning)" in out


def test_unknown_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace("keywords:", "colour: blue\nkeywords:")
    code, out, _ = cli(capsys, str(dataset(tmp_path, text)))
    assert code == 1
    assert "D4C203 unknown key `colour`; known keys: id, version," in out and "(warning)" not in out


@pytest.mark.parametrize("args", [["no/such/path"], ["/dev/null"], ["--format", "xml"], ["--bogus"]])
def test_usage_errors_exit_two(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_folder_without_recipes_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, str(tmp_path))
    assert code == 2 and "no recipe.yaml found" in err


def test_duplicate_ids_across_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset(tmp_path)
    dataset(tmp_path / "other")
    a, b = tmp_path / "datasets", tmp_path / "other" / "datasets"
    recipe = a / "ca_d4c_provinces-territories" / "recipe.yaml"
    assert cli(capsys, str(a), str(recipe.parent), str(recipe))[0] == 0  # one file, named 3 ways
    code, out, _ = cli(capsys, str(a), str(b))
    assert code == 1
    assert out.count("D4C303") == 1 and f"{b}/ca_d4c_provinces-territories/recipe.yaml:3:5: D4C303" in out


def test_allow_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace(
        "    path: sources/provinces-territories.csv", "    url: http://127.0.0.1:8765/p.csv")
    recipe = dataset(tmp_path, text)
    code, out, _ = cli(capsys, str(recipe))
    assert code == 1 and "D4C503 URL points at the loopback host 127.0.0.1" in out
    assert cli(capsys, "--allow-loopback", str(recipe))[:2] == (0, "")
    private = text.replace("127.0.0.1", "192.168.1.10")
    (tmp_path / "datasets" / "ca_d4c_provinces-territories" / "recipe.yaml").write_text(private)
    code, out, _ = cli(capsys, "--allow-loopback", str(recipe))
    assert code == 1 and "D4C503" in out  # loopback only, never private networks


def test_credentials_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace(
        "    path: sources/provinces-territories.csv",
        "    url: https://alice:s3cr3t-Pa55@example.org/p.csv\n"
        "    alternate_urls: [http://bob:s3cr3t-Pa55@example.org/p.csv]")
    for fmt in ("text", "github", "json"):
        code, out, err = cli(capsys, "--format", fmt, str(dataset(tmp_path / fmt, text)))
        assert code == 1 and out.count("D4C502") == 2
        assert "s3cr3t-Pa55" not in out + err


def test_size_limit_and_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"id: x\n" + b"# padding\n" * 30_000)
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    code, out, _ = cli(capsys, str(big), str(empty))
    assert code == 1
    assert f"{big}:1:1: D4C101 file is 300006 bytes; the limit is 262144" in out
    assert f"{empty}:1:1: D4C103" in out


def test_parallel_equals_serial(tmp_path: Path) -> None:
    base = (DEMO / "recipe.yaml").read_text()
    for i in range(60):
        text = base.replace("ca_d4c_provinces-territories", f"ca_bench_{i:03d}")
        if i % 3 == 0:
            text = text.replace("CC-BY-4.0", "Apache 2")
        if i % 7 == 0:
            text = text.replace("version: 1.0.0", 'version: "1.0"')
        dataset(tmp_path, text)
    folder = [tmp_path / "datasets"]
    serial = validate_paths(folder, jobs=1)
    assert validate_paths(folder, jobs=2) == serial
    assert {f.lint for f in serial} == {"D4C401", "D4C304"} and len(serial) == 20 + 9


def test_github_escaping() -> None:
    from d4c.validate.lints import Finding
    out = github([Finding("a,b:c.yaml", 2, 3, "D4C201", "50% done\nnext")])
    # line breaks are escaped in the finding itself, so no message can forge a second command
    assert out == "::error file=a%2Cb%3Ac.yaml,line=2,col=3,title=D4C201::50%25 done\\nnext\n"


def test_lint_docs_are_fresh_and_written_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "lints.md"
    assert cli(capsys, "--write-lint-docs", str(target))[0] == 0
    assert list(tmp_path.iterdir()) == [target]
    assert (REPO / "docs" / "lints.md").read_text() == target.read_text(), "run `make docs`"


def test_registry_is_complete_and_exercised() -> None:
    assert all(re.fullmatch(r"D4C[1-9]\d\d", k) and v.id == k for k, v in LINTS.items())
    assert all(v.what and v.why and v.fix and v.severity in ("error", "warning") for v in LINTS.values())
    code = "".join(p.read_text() for p in (REPO / "scripts" / "d4c" / "validate").glob("*.py"))
    assert set(re.findall(r'"(D4C\d{3})"', code)) <= set(LINTS)
    tests = "".join(p.read_text("utf-8", "replace") for p in Path(__file__).parent.glob("test_validate_*.py"))
    corpus = "".join(p.read_text("utf-8", "replace") for p in (REPO / "tests" / "broken_recipes").iterdir())
    assert set(LINTS) <= set(re.findall(r"D4C\d{3}", tests + corpus)), "every lint needs a test"


def test_warnings_for_deprecated_license_missing_environment_bad_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (DEMO / "recipe.yaml").read_text().replace("license: CC-BY-4.0", "license: GPL-2.0")
    text = text.replace("environment: docker/Dockerfile", "environment: docker/Nope.dockerfile")
    recipe = dataset(tmp_path, text)
    releases = tmp_path / "releases" / "ca_d4c_provinces-territories"
    releases.mkdir(parents=True)
    (releases / "0.9.0.json").write_text('{"version": "0.9.0"}')
    (releases / "broken.json").write_text("{not json")
    code, out, _ = cli(capsys, str(recipe))
    assert code == 0, out
    assert sorted(re.findall(r"D4C\d{3}", out)) == ["D4C306", "D4C402", "D4C607"]
    assert f"{releases / 'broken.json'}:1:1: D4C306" in out
    (releases / "1.0.1.json").write_text('{"version": "1.0.1"}')
    code, out, _ = cli(capsys, str(recipe))
    assert code == 1 and "D4C305 version 1.0.0 is below the newest release 1.0.1" in out


def test_every_url_in_the_recipe_follows_the_source_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    params = """    crs: EPSG:4326
    publisher: Statistics Canada
    crs_urn: "urn:ogc:def:crs:EPSG::4326"
    entry: transform.py:build
    note: "see https://127.0.0.1/ in prose"
    mirror: https://data.source.coop/dataforcanada/x.csv
    nested:
      - {endpoint: "HTTP://10.1.2.3/api"}
      - [ftp://example.org/x]
    "https://user:pw@example.org/": as a key
"""
    text = (DEMO / "recipe.yaml").read_text().replace("    crs: EPSG:4326\n", params)
    text = text.replace("url: https://dataforcanada.org", "url: http://127.0.0.1:8000/")
    recipe = dataset(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    lines = text.splitlines()

    def at(needle: str) -> int:
        return next(n for n, line in enumerate(lines, 1) if needle in line)

    code, out, _ = cli(capsys, str(recipe.relative_to(tmp_path)))
    assert code == 1
    found = sorted(re.findall(r":(\d+):(\d+): (D4C\d{3}) (.*)", out))
    assert found == sorted([
        (str(at("url: http://127.0.0.1")), "10", "D4C503", "URL points at the loopback host 127.0.0.1"),
        (str(at("endpoint:")), "20", "D4C503", "URL points at the private or local host 10.1.2.3"),
        (str(at("ftp://")), "10", "D4C501", "URL scheme is ftp; use https"),
        (str(at("user:pw")), "5", "D4C502", "URL carries credentials (user:password@); remove them"),
    ]), out  # one finding each (no schema pattern error on the provider too); prose is not a URL
    code, out, _ = cli(capsys, "--allow-loopback", str(recipe.relative_to(tmp_path)))
    assert "127.0.0.1" not in out and out.count("D4C50") == 3  # --allow-loopback: loopback only


def test_unknown_keys_give_one_finding_each(tmp_path: Path) -> None:
    text = (DEMO / "recipe.yaml").read_text()
    text = text.replace("    sha256: ", "    Sha-256: ").replace("  python:", "  pyhton:")
    text = text.replace("  torrent: true", "  torrent: true\n  torrents: true")
    findings = validate_paths([dataset(tmp_path, text)])
    assert sorted((f.lint, f.message) for f in findings) == [
        ("D4C203", "unknown key `distribution.torrents`; did you mean `torrent`?"),  # present keys last
        ("D4C203", "unknown key `sources[0].Sha-256`; did you mean `sha256`?"),
        ("D4C203", "unknown key `transform.pyhton`; did you mean `python`?"),
    ]  # and neither "missing `sha256`" nor "needs `python` or `command`"
