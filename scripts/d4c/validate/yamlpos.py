"""Position-aware, hostile-input-safe YAML loading for recipes.

ruamel.yaml composes the node graph (which carries line and column marks); we turn
nodes into plain JSON-like values ourselves so that every value and key keeps its
position, duplicate keys and odd tags become findings, and aliases are counted
while composing (a YAML bomb is stopped before it expands, not after).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.parser import Parser
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import Scanner

from d4c.validate.lints import Finding

MAX_BYTES = 256 * 1024
MAX_ALIASES = 100
MAX_NODES = 20_000
MAX_DEPTH = 50

Pos = tuple[int, int]
JPath = tuple[str | int, ...]
_T = "tag:yaml.org,2002:"
_KEY_TAGS = frozenset(_T + t for t in ("str", "int", "bool", "null", "float", "timestamp"))
warnings.filterwarnings("ignore", category=ReusedAnchorWarning)  # a re-used anchor is legal YAML


@dataclass
class Loaded:
    """A recipe as plain data, with the 1-based position of every value and key."""

    data: Any = None
    values: dict[JPath, Pos] = field(default_factory=dict)
    keys: dict[JPath, Pos] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def pos(self, path: JPath, *, key: bool = False) -> Pos:
        """Position of the node at `path` (its key if asked), else of its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, (1, 1))


class _Stop(Exception):
    """Abort loading with one finding."""

    def __init__(self, lint: str, pos: Pos, message: str):
        super().__init__(message)
        self.lint, self.at, self.message = lint, pos, message


class _Parser(Parser):
    # ruamel's pure-Python pipeline looks its parts up through properties on every
    # token (about a fifth of the load time); plain attributes, bound once per load.
    scanner: Any = None
    resolver: Any = None


class _Scanner(Scanner):
    reader: Any = None

    def __init__(self, loader: Any = None) -> None:
        self.reader = loader.reader
        super().__init__(loader)


class _CountingComposer(Composer):
    """Counts alias references as they are composed; refuses past MAX_ALIASES."""

    aliases = 0
    parser: Any = None
    resolver: Any = None

    def get_single_node(self) -> Any:
        loader = self.loader
        self.aliases = 0
        self.parser, self.resolver = loader.parser, loader.resolver
        self.parser.scanner, self.parser.resolver = loader.scanner, loader.resolver
        return super().get_single_node()

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.parser.peek_event().start_mark
                raise _Stop("D4C107", (mark.line + 1, mark.column + 1),
                            f"more than {MAX_ALIASES} YAML aliases (a YAML bomb?)")
        return super().compose_node(parent, index)


def _at(node: Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _pos_of_offset(text: str | bytes, offset: int) -> Pos:
    nl = "\n" if isinstance(text, str) else b"\n"
    line_start = text.rfind(nl, 0, offset) + 1  # type: ignore[arg-type]
    return (text.count(nl, 0, offset) + 1, offset - line_start + 1)  # type: ignore[arg-type]


def _char(c: object) -> str:
    code = c if isinstance(c, int) else ord(str(c)[:1] or "?")
    return f"U+{code:04X}"


def _scalar(node: ScalarNode) -> Any:
    tag, v = str(node.tag), node.value
    if tag in (_T + "str", _T + "timestamp"):  # dates stay text: recipes are JSON data
        return v
    if tag == _T + "null":
        return None
    if tag == _T + "bool":
        return v.lower() in ("true", "yes", "on", "y")
    try:
        if tag == _T + "int":
            digits = v.replace("_", "")
            try:
                return int(digits, 0)
            except ValueError:
                return int(digits, 10)  # "010": YAML 1.2 decimal with a leading zero
        if tag == _T + "float":
            low = v.replace("_", "").lower()
            if low in (".inf", "+.inf", "-.inf", ".nan"):
                return float(low.replace(".", ""))
            return float(low)
    except ValueError:
        raise _Stop("D4C104", _at(node), f"cannot read {v[:40]!r} as a number") from None
    raise _Stop("D4C108", _at(node), f"unsupported YAML tag {tag[:60]!r}")


class _Builder:
    def __init__(self, out: Loaded, display: str):
        self.out, self.display, self.count = out, display, 0
        self.open: set[int] = set()  # collections being built: an alias to one is a cycle

    def build(self, node: Node, path: JPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            # report the top-level entry being expanded: that is where the bomb is
            at = self.out.values.get(path[:1], _at(node))
            raise _Stop("D4C107", at, f"aliases expand to more than {MAX_NODES} nodes")
        self.out.values[path] = _at(node)
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if id(node) in self.open:
            raise _Stop("D4C107", _at(node), "an alias refers to its own ancestor (a recursive structure)")
        self.open.add(id(node))
        try:
            return self._collection(node, path)
        finally:
            self.open.discard(id(node))

    def _collection(self, node: Node, path: JPath) -> Any:
        tag = str(node.tag)
        if isinstance(node, SequenceNode):
            if tag != _T + "seq":
                raise _Stop("D4C108", _at(node), f"unsupported YAML tag {tag[:60]!r}")
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if not isinstance(node, MappingNode) or tag != _T + "map":
            raise _Stop("D4C108", _at(node), f"unsupported YAML tag {tag[:60]!r}")
        result: dict[str, Any] = {}
        merges: list[Node] = []
        for knode, vnode in node.value:
            if str(knode.tag) == _T + "merge":
                merges.append(vnode)
                continue
            if not isinstance(knode, ScalarNode) or str(knode.tag) not in _KEY_TAGS:
                raise _Stop("D4C108", _at(knode), "a mapping key must be plain text")
            key = knode.value
            if key in result:
                first = self.out.keys.get((*path, key), (0, 0))[0]
                self.out.findings.append(Finding(self.display, *_at(knode), "D4C106",
                                                 f"duplicate key {key[:60]!r} (first on line {first})"))
                continue
            self.out.keys[(*path, key)] = _at(knode)
            result[key] = self.build(vnode, (*path, key))
        for merge in merges:  # YAML merge keys: `<<: *base` fills keys not set explicitly
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for src in sources:
                merged = self.build(src, path) if isinstance(src, MappingNode) else None
                if not isinstance(merged, dict):
                    raise _Stop("D4C108", _at(src), "`<<` must merge a mapping")
                for k, v in merged.items():
                    result.setdefault(k, v)
        return result


def _new_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _CountingComposer
    yaml.Parser = _Parser
    yaml.Scanner = _Scanner
    yaml.max_depth = MAX_DEPTH
    return yaml


_YAML: YAML | None = None


def load_bytes(raw: bytes, display: str) -> Loaded:
    """Load recipe bytes. File-level problems (size, encoding, tabs, syntax) end the load."""
    global _YAML
    out = Loaded()

    def stop(lint: str, pos: Pos, message: str) -> Loaded:
        out.findings.append(Finding(display, pos[0], pos[1], lint, message))
        return out

    if len(raw) > MAX_BYTES:
        return stop("D4C101", (1, 1), f"file is {len(raw)} bytes; the limit is {MAX_BYTES}")
    if b"\x00" in raw:
        return stop("D4C102", _pos_of_offset(raw, raw.index(b"\x00")), "binary file (NUL byte)")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return stop("D4C102", _pos_of_offset(raw, exc.start), "not UTF-8 text (invalid byte)")
    if "\t" in text:
        for n, line in enumerate(text.split("\n"), 1):
            if "\t" in line:
                out.findings.append(Finding(display, n, line.index("\t") + 1, "D4C105",
                                            "tab character; use spaces"))
        return out
    yaml = _YAML if _YAML is not None else _new_yaml()
    _YAML = None  # a parser that raised midway is not reused
    try:
        root = yaml.compose(text)
        _YAML = yaml
        if root is None:
            return stop("D4C103", (1, 1), "no YAML document in the file")
        out.data = _Builder(out, display).build(root, ())
    except _Stop as exc:
        return stop(exc.lint, exc.at, exc.message)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        lint = "D4C104"
        msg = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if "could not determine a constructor" in msg or "tag" in str(exc.problem or ""):
            lint = "D4C108"
        if isinstance(exc, MaxDepthExceededError):
            msg = f"nesting deeper than {MAX_DEPTH} levels"
        return stop(lint, where, msg.replace("\n", " ")[:200])
    except ReaderError as exc:
        return stop("D4C102", _pos_of_offset(text, exc.position),
                    f"control character {_char(exc.character)} is not allowed in YAML")
    except (YAMLError, RecursionError) as exc:
        return stop("D4C104", (1, 1), f"invalid YAML: {str(exc).splitlines()[0][:160]}")
    return out
