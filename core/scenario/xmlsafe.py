"""Parse untrusted XML with expat: no DOCTYPE, bounded memory, no recursion.

``defusedxml`` is not available, so we drive :mod:`xml.parsers.expat` directly:
any document type declaration, entity declaration or external entity
reference aborts the parse. That closes entity-expansion ("billion laughs")
and external-entity (XXE) attacks outright instead of relying on expat's
amplification heuristics.

Two readers:

* :func:`parse_document` builds a tiny element tree (tag, attributes, text,
  children, line) of a ``.sumocfg``; the tree is built and walked without
  recursion, so a config nested thousands of elements deep is just data;
* :func:`scan_elements` streams a (possibly huge) SUMO input file and reports
  only the elements the caller watches for (:class:`Watch`).

Memory is bounded: the input is fed in :data:`FEED_BYTES` pieces and, after
each piece, the bytes expat still holds unparsed (``fed - CurrentByteIndex``:
the token it is waiting to complete, a tag, comment or processing instruction)
must stay under :data:`MAX_TOKEN_BYTES`, else 413 before expat buffers more.

Speed: route and network files hold millions of elements and few that
matter. pyexpat builds an attribute dict for every element it reports, so
the element handler is switched off for every piece whose bytes contain
none of the watched names (``bytes.__contains__``, in C). Any tag completed
while a piece is fed starts in that piece or at the last ``<`` before it
(a tag cannot contain ``<``), so the test runs on the bytes since that ``<``
plus the piece. It is only valid when the document's bytes are ASCII
compatible (UTF-8, Latin-1, ...); UTF-16 and other encodings get the handler
all the time, and so does every piece until the root element has been seen.
Text and comments cannot trigger a refusal this way: only attributes are
reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator
from xml.parsers import expat

from .errors import ScenarioError

__all__ = ["Element", "Watch", "parse_document", "scan_elements", "MAX_TOKEN_BYTES", "FEED_BYTES"]

#: Longest single tag (or comment, processing instruction) accepted; SUMO polygons can be megabytes long.
MAX_TOKEN_BYTES = 16 << 20
#: Bytes handed to expat at a time.
FEED_BYTES = 1 << 20
#: Bytes fed with the full handler while looking for the root element.
_HEAD_BYTES = 4096

#: Declared encodings whose bytes 0x00-0x7f mean ASCII, so byte needles find attribute names.
_ASCII_COMPATIBLE = ("utf-8", "utf8", "us-ascii", "ascii", "iso-8859-", "iso8859-", "latin-1",
                     "latin1", "windows-125", "cp125")


@dataclass(slots=True)
class Element:
    """One XML element of a parsed document."""

    tag: str
    attrib: dict[str, str]
    line: int
    text: str = ""
    children: list["Element"] = field(default_factory=list)

    def iter(self) -> Iterator["Element"]:
        """Yield this element and all descendants in document order (iteratively: depth is unbounded)."""
        stack = [self]
        while stack:
            el = stack.pop()
            yield el
            stack.extend(reversed(el.children))


@dataclass(frozen=True)
class Watch:
    """What :func:`scan_elements` reports: the root, elements with one of ``attrs``, elements
    whose tag is in ``tags``, and (see below) elements with an attribute ending in one of ``suffixes``.

    Pre-filter, for ASCII-compatible documents: every reported element has in
    its bytes one of ``needles``, or (``gated``) the gate and one of the gated
    needles, or one of ``suffix_needles`` (only then are ``suffixes`` looked at,
    a Python loop over attributes). Pieces with none of them are parsed with
    the handler off.
    """

    attrs: frozenset[str]
    tags: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    needles: tuple[bytes, ...] = ()
    gated: tuple[bytes, tuple[bytes, ...]] = (b"", ())
    suffix_needles: tuple[bytes, ...] = ()


class _Prefilter:
    """Decides per piece which handler expat needs (see the module docstring).

    Flags ``p_*`` tell what the pending markup (the bytes since the last
    ``<`` before the next piece) contains; ``tail`` keeps its last bytes so a
    needle split between two pieces is found too.
    """

    NONE, PLAIN, FULL = 0, 1, 2

    def __init__(self, watch: Watch) -> None:
        self.needles = watch.needles
        self.gate, self.gated = watch.gated
        self.suffix_needles = watch.suffix_needles
        every = self.needles + self.gated + self.suffix_needles + (self.gate,)
        self.keep = max(len(n) for n in every) or 1
        self.tail = b""
        self.p_needle = self.p_gate = self.p_gated = self.p_suffix = False

    @staticmethod
    def _any(needles: tuple[bytes, ...], *blobs: bytes) -> bool:
        return any(n in blob for blob in blobs for n in needles)

    def mode(self, piece: bytes) -> int:
        """The handler mode for ``piece``; also advances the pending-markup state past it."""
        edge = self.tail + piece[:self.keep]
        needle = self.p_needle or self._any(self.needles, piece, edge)
        suffix = self.p_suffix or self._any(self.suffix_needles, piece, edge)
        gate = bool(self.gate) and (self.p_gate or self.gate in piece or self.gate in edge)
        gated = None  # searched only when it decides something
        if gate and not needle:
            gated = self.p_gated or self._any(self.gated, piece, edge)
        lt = piece.rfind(b"<")
        if lt >= 0:
            rest = piece[lt:]
            self.p_needle = self._any(self.needles, rest)
            self.p_suffix = self._any(self.suffix_needles, rest)
            self.p_gate = bool(self.gate) and self.gate in rest
            self.p_gated = self._any(self.gated, rest)
            self.tail = rest[-self.keep:]
        else:
            if gated is None:
                gated = self.p_gated or self._any(self.gated, piece, edge)
            self.p_needle, self.p_suffix, self.p_gate, self.p_gated = needle, suffix, gate, gated
            self.tail = (self.tail + piece)[-self.keep:]
        if suffix:
            return self.FULL
        return self.PLAIN if needle or (gate and gated) else self.NONE


class _Forbidden(Exception):
    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


def _new_parser() -> expat.XMLParserType:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    if hasattr(parser, "SetReparseDeferralEnabled"):  # expat >= 2.6: report tags in the piece that ends them
        parser.SetReparseDeferralEnabled(False)

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


def _not_xml(label: str, exc: BaseException) -> ScenarioError:
    return ScenarioError(f"{label} is not well-formed XML: {exc}")


def _feed(parser: expat.XMLParserType, data: bytes, final: bool, label: str) -> None:
    """One ``Parse`` call with every parser failure mapped to a 422 refusal."""
    try:
        parser.Parse(data, final)
    except _Forbidden as exc:
        raise ScenarioError(
            f"{label} must not contain {exc.what} (line {exc.line}); "
            "DOCTYPE and ENTITY declarations are refused"
        ) from None
    except expat.ExpatError as exc:
        raise _not_xml(label, exc) from None
    except (ValueError, LookupError, UnicodeError, OverflowError) as exc:  # odd encodings, huge indexes
        raise _not_xml(label, exc) from None


def _check_token(parser: expat.XMLParserType, fed: int, label: str) -> None:
    pending = fed - parser.CurrentByteIndex
    if parser.CurrentByteIndex >= 0 and pending > MAX_TOKEN_BYTES:
        raise ScenarioError(
            f"{label}: a single tag or comment starting at line {parser.CurrentLineNumber} is longer "
            f"than {MAX_TOKEN_BYTES} bytes, more than is accepted", 413
        )


def parse_document(data: bytes, label: str) -> Element:
    """Parse ``data`` into an :class:`Element` tree; ``label`` names the file in errors."""
    stack: list[Element] = []
    root: list[Element] = []
    parser = _new_parser()

    def start(tag, attrs):
        el = Element(tag, attrs, parser.CurrentLineNumber)  # pyexpat hands out a fresh dict
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
    fed = 0
    for pos in range(0, len(data), FEED_BYTES):
        piece = data[pos:pos + FEED_BYTES]
        _feed(parser, piece, False, label)
        fed += len(piece)
        _check_token(parser, fed, label)
    _feed(parser, b"", True, label)
    if not root:  # pragma: no cover - expat reports "no element found" itself
        raise ScenarioError(f"{label} is not well-formed XML: no element found")
    return root[0]


_DECLARATION = re.compile(rb"<\?xml\s[^?]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]*)[\"']")


def _ascii_compatible(head: bytes) -> bool:
    """Whether the document starting with ``head`` encodes ASCII as ASCII, so byte needles work.

    Decided like expat: UTF-16 by its BOM or by a NUL in the first bytes,
    else the XML declaration's encoding (UTF-8 when there is none).
    """
    if head[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in head[:4]:
        return False
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.startswith(b"<?xml"):
        return True  # no declaration: UTF-8
    end = head.find(b"?>", 0, 1024)
    if end < 0:
        return False  # an odd declaration: no shortcuts
    match = _DECLARATION.match(head, 0, end)
    if match is None:
        return b"encoding" not in head[:end]
    return match.group(1).decode("ascii").lower().startswith(_ASCII_COMPATIBLE)


def scan_elements(
    source: IO[bytes],
    label: str,
    on_element: Callable[[str, dict[str, str], int], None],
    watch: Watch,
) -> None:
    """Stream ``source`` and call ``on_element(tag, attrs, line)`` for the root and each watched element.

    Raises :class:`ScenarioError`: 422 for XML that is not well-formed or has
    a DOCTYPE, 413 for a token over :data:`MAX_TOKEN_BYTES`; whatever
    ``on_element`` or ``source.read`` raise passes through.
    """
    parser = _new_parser()
    attrs_of_interest, tags = watch.attrs, watch.tags
    suffixes = watch.suffixes
    seen_root = False

    def plain(tag, attrs):
        nonlocal seen_root
        if tag in tags or not attrs_of_interest.isdisjoint(attrs) or not seen_root:
            seen_root = True
            on_element(tag, attrs, parser.CurrentLineNumber)

    def full(tag, attrs):
        nonlocal seen_root
        if tag in tags or not attrs_of_interest.isdisjoint(attrs) or not seen_root \
                or any(name.endswith(suffixes) for name in attrs):
            seen_root = True
            on_element(tag, attrs, parser.CurrentLineNumber)

    parser.StartElementHandler = full
    prefilter = _Prefilter(watch)
    handlers = {_Prefilter.NONE: None, _Prefilter.PLAIN: plain, _Prefilter.FULL: full}
    fed = 0
    ascii_ok = None  # decided on the first piece, which holds the XML declaration
    while True:
        piece = source.read(FEED_BYTES)
        if not piece:
            break
        if ascii_ok is None:
            ascii_ok = _ascii_compatible(piece)
        # until the root is seen, feed a small head first so the rest of the piece can be filtered
        parts = (piece[:_HEAD_BYTES], piece[_HEAD_BYTES:]) if not seen_root else (piece,)
        for part in parts:
            if not part:
                continue
            mode = prefilter.mode(part)
            handler = handlers[mode] if ascii_ok and seen_root else full
            if handler is not parser.StartElementHandler:
                parser.StartElementHandler = handler
            _feed(parser, part, False, label)
            fed += len(part)
            _check_token(parser, fed, label)
    parser.StartElementHandler = full
    _feed(parser, b"", True, label)
