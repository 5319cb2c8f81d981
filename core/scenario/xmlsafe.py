"""Parse untrusted XML with expat, refusing DOCTYPE and ENTITY declarations.

``defusedxml`` is not available, so we drive :mod:`xml.parsers.expat` directly:
any document type declaration, entity declaration or external entity
reference aborts the parse. That closes entity-expansion ("billion laughs")
and external-entity (XXE) attacks outright instead of relying on expat's
amplification heuristics. The result is a tiny element tree (tag, attributes,
text, children, line) which is all the ``.sumocfg`` checks need; additional
files, which may be large, are scanned in streaming mode via callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Callable
from xml.parsers import expat

from .errors import ScenarioError

__all__ = ["Element", "parse_document", "scan_elements"]


@dataclass
class Element:
    """One XML element of a parsed document."""

    tag: str
    attrib: dict[str, str]
    line: int
    text: str = ""
    children: list["Element"] = field(default_factory=list)

    def iter(self):
        """Yield this element and all descendants, document order."""
        yield self
        for child in self.children:
            yield from child.iter()


class _Forbidden(Exception):
    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


def _new_parser() -> expat.XMLParserType:
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def doctype(name, *_args):
        raise _Forbidden(f"a DOCTYPE declaration ({name})", parser.CurrentLineNumber)

    def entity(name, *_args):
        raise _Forbidden(f"an ENTITY declaration ({name})", parser.CurrentLineNumber)

    def external(*_args):
        raise _Forbidden("an external entity reference", parser.CurrentLineNumber)

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def _run(parser: expat.XMLParserType, source: bytes | IO[bytes], label: str) -> None:
    try:
        if isinstance(source, (bytes, bytearray)):
            parser.Parse(source, True)
        else:
            parser.ParseFile(source)
    except _Forbidden as exc:
        raise ScenarioError(
            f"{label} must not contain {exc.what} (line {exc.line}); "
            "DOCTYPE and ENTITY declarations are refused"
        ) from None
    except expat.ExpatError as exc:
        raise ScenarioError(f"{label} is not well-formed XML: {exc}") from None


def parse_document(data: bytes, label: str) -> Element:
    """Parse ``data`` into an :class:`Element` tree; ``label`` names the file in errors."""
    stack: list[Element] = []
    root: list[Element] = []
    parser = _new_parser()

    def start(tag, attrs):
        el = Element(tag, dict(attrs), parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)

    def end(_tag):
        stack.pop()

    def chars(text):
        if stack:
            stack[-1].text += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    _run(parser, data, label)
    if not root:  # pragma: no cover - expat reports "no element found" itself
        raise ScenarioError(f"{label} is not well-formed XML: no element found")
    return root[0]


def scan_elements(
    source: IO[bytes],
    label: str,
    on_element: Callable[[str, dict[str, str], int], None],
    having: frozenset[str],
) -> None:
    """Stream ``source`` and call ``on_element(tag, attrs, line)`` for each start tag with an attribute in ``having``.

    Route files hold many thousands of elements and few of interest: the
    filter runs in C (``isdisjoint``), the callback only where it matters.
    """
    parser = _new_parser()

    def start(tag, attrs):
        if not having.isdisjoint(attrs):
            on_element(tag, attrs, parser.CurrentLineNumber)

    parser.StartElementHandler = start
    _run(parser, source, label)
