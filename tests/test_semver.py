"""d4c.semver, the one SemVer: precedence as semver.org section 11 gives it, and bump kinds."""
from __future__ import annotations

import itertools
import random
import re

import pytest
from d4c import semver
from d4c.errors import D4CError

# semver.org section 11.4, in order, then a few releases around them.
SPEC_ORDER = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
              "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
ORDER = ["0.9.9", *SPEC_ORDER, "1.0.1", "1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0-rc.2",
         "2.0.0-rc.10", "2.0.0"]


def test_spec_examples_in_precedence_order() -> None:
    for low, high in itertools.pairwise(SPEC_ORDER):
        assert semver.key(low) < semver.key(high), (low, high)


def test_sorting_any_shuffle_gives_precedence_order() -> None:
    rng = random.Random(11)
    for _ in range(20):
        shuffled = ORDER[:]
        rng.shuffle(shuffled)
        assert sorted(shuffled, key=semver.key) == ORDER


@pytest.mark.parametrize(("low", "high"), [
    ("1.0.0-2", "1.0.0-10"),           # numeric identifiers compare as numbers
    ("1.0.0-999", "1.0.0-a"),          # numeric below alphanumeric
    ("1.0.0-a.1", "1.0.0-a.1.0"),      # more identifiers win when the rest are equal
    ("1.0.0-Z", "1.0.0-a"),            # alphanumeric identifiers compare in ASCII order
    ("1.0.0-rc.1", "1.0.0"),           # a pre-release sorts below its release
    ("1.9.0", "1.10.0"), ("1.0.10", "1.1.0"),
])
def test_precedence_rules(low: str, high: str) -> None:
    assert semver.key(low) < semver.key(high)


def test_build_metadata_is_ignored() -> None:
    assert semver.key("1.0.0+build.5") == semver.key("1.0.0") == semver.key("1.0.0+other")
    assert semver.key("1.0.0-rc.1+b") == semver.key("1.0.0-rc.1")
    assert not semver.is_prerelease("1.0.0+build.5")


@pytest.mark.parametrize("text", ["1.0", "1", "01.0.0", "1.00.0", "1.0.0-01", "1.0.0-", "1.0.0+",
                                  "1.0.0-a..b", "v1.0.0", " 1.0.0", "1.0.0\n", "1.0.0-é", "1.٠.0", ""])
def test_not_semver_is_refused_with_a_hint(text: str) -> None:
    assert not semver.is_valid(text)
    with pytest.raises(D4CError, match="not SemVer") as info:
        semver.key(text)
    assert isinstance(info.value, ValueError)  # callers that parse may catch either
    assert info.value.hint and "MAJOR.MINOR.PATCH" in info.value.hint


def test_pattern_agrees_with_the_library() -> None:
    """PATTERN embeds in key layouts and selectors; it must accept exactly what parse accepts."""
    samples = [*ORDER, "1.0.0+build.5", "1.0.0-x-y.0.z+20130313144700", "0.0.0-0", "1.0.0-0a",
               "1.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0+", "1.0.0-a..b", "1.0.0+a+b", "1.2.3.4"]
    for text in samples:
        assert (re.fullmatch(semver.PATTERN, text) is not None) is semver.is_valid(text), text


def test_latest_is_the_newest_release_else_the_newest_pre_release() -> None:
    assert semver.latest(["1.10.0", "2.0.0-rc.1", "1.9.0"]) == "1.10.0"
    assert semver.latest(["2.0.0-rc.1", "2.0.0-rc.10", "2.0.0-rc.2"]) == "2.0.0-rc.10"
    assert semver.latest(["2.0.0-rc.1", "2.0.0", "1.0.0"]) == "2.0.0"
    assert semver.latest([]) is None


@pytest.mark.parametrize(("old", "new", "kind"), [
    ("1.0.0", "2.0.0", "major"), ("1.0.0", "1.1.0", "minor"), ("1.2.3", "1.2.4", "patch"),
    ("1.2.3", "1.2.3", "none"), ("1.2.3", "1.2.3+rebuilt", "none"), ("1.2.3", "1.1.9", "downgrade"),
    ("1.9.9", "1.10.0", "minor"), ("1.0.0", "2.0.0-rc.1", "major"), ("2.0.0", "2.0.0-rc.1", "downgrade"),
    # the release of a pre-release is the bump the pre-release announced, never `none`
    ("2.0.0-rc.1", "2.0.0", "major"), ("1.3.0-rc.1", "1.3.0", "minor"), ("1.2.4-rc.1", "1.2.4", "patch"),
    ("0.2.0-beta", "0.2.0", "minor"), ("2.0.0-rc.1", "2.0.0-rc.2", "major"),
    ("2.0.0-rc.1", "2.0.1", "major"), ("1.3.0-rc.1", "2.0.0", "major"),
    ("2.0.0-rc.2", "2.0.0-rc.1", "downgrade"), ("2.0.0-rc.1", "2.0.0-rc.1", "none"),
])
def test_bump(old: str, new: str, kind: str) -> None:
    assert semver.bump(old, new) == kind


@pytest.mark.parametrize(("old", "kind", "version"), [
    ("1.2.3", "patch", "1.2.4"), ("1.2.3", "minor", "1.3.0"), ("1.2.3", "major", "2.0.0"),
    ("1.2.3+b", "patch", "1.2.4"),
    ("2.0.0-rc.1", "major", "2.0.0"), ("2.0.0-rc.1", "patch", "2.0.0"),  # release it
    ("1.3.0-rc.1", "minor", "1.3.0"), ("1.3.0-rc.1", "major", "2.0.0"),
    ("1.2.4-rc.1", "patch", "1.2.4"), ("1.2.4-rc.1", "minor", "1.3.0"),
])
def test_suggest_is_the_smallest_release_that_covers(old: str, kind: str, version: str) -> None:
    assert semver.suggest(old, kind) == version
    assert semver.bump(old, version) in semver.KINDS[semver.KINDS.index(kind):]  # type: ignore[arg-type]
