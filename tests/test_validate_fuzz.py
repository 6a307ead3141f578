"""Generated garbage never crashes the validator: the output is findings, nothing else."""
from __future__ import annotations

import json
from pathlib import Path

from d4c.validate import LINTS, check_file
from d4c.validate.yamlpos import load_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
DEMO = (REPO / "datasets" / "ca_d4c_provinces-territories" / "recipe.yaml").read_bytes()
FIELDS = ["id", "version", "title", "description", "en", "fr", "license", "creators", "orcid",
          "sources", "url", "path", "sha256", "size", "alternate_urls", "transform", "python",
          "command", "params", "outputs", "name", "format", "sort_by", "distribution", "spatial",
          "bbox", "temporal", "start", "end", "environment", "sample", "providers", "limits",
          "wall_time", "memory", "processes", "output_size"]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["../x", "/etc/passwd", "transform.py:build", "https://127.0.0.1/",
                       "https://[::ffff:a9fe:a9fe]:x/", "javascript:", "https://u@[v1.x]/", "90m", "8 GiB",
                       "CC-BY-4.0", "0000-0002-1825-0097", "1.0.0", "geoparquet", "a" * 64]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=6),
    max_leaves=40,
)


def well_formed(findings: list, path: str) -> None:
    for f in findings:
        assert f.lint in LINTS and f.line >= 1 and f.col >= 1 and f.message
        assert not any(c in f.message + f.path for c in "\n\r\x85\u2028\u2029")


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes(raw: bytes) -> None:
    well_formed(load_bytes(raw, "x.yaml").findings, "x.yaml")


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`?,\n  \t0.~") + ["\u00e9", "\x85"]),
               max_size=300))
def test_yaml_punctuation_soup(text: str) -> None:
    well_formed(load_bytes(text.encode(), "x.yaml").findings, "x.yaml")


@SETTINGS
@given(json_values)
def test_arbitrary_structures(tmp_path_factory: object, value: object) -> None:
    root = tmp_path_factory.mktemp("repo")  # type: ignore[attr-defined]
    folder = root / "datasets" / "ca_fuzz"  # a repo layout, so release and docker lints run too
    folder.mkdir(parents=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(json.dumps(value))  # JSON is YAML 1.2
    findings, _ = check_file(recipe)
    well_formed(findings, str(recipe))
    assert sorted(p.name for p in folder.iterdir()) == ["recipe.yaml"]


@SETTINGS
@given(st.integers(0, len(DEMO)), st.integers(0, 40), st.binary(max_size=20))
def test_mutated_demo_recipe(tmp_path_factory: object, at: int, cut: int, insert: bytes) -> None:
    root = tmp_path_factory.mktemp("repo")  # type: ignore[attr-defined]
    folder = root / "datasets" / "ca_d4c_provinces-territories"
    folder.mkdir(parents=True)
    recipe = folder / "recipe.yaml"
    recipe.write_bytes(DEMO[:at] + insert + DEMO[at + cut:])
    findings, _ = check_file(recipe)
    well_formed(findings, str(recipe))
