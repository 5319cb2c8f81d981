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
all the time, as does the first piece (where the XML declaration is read).
Text and comments cannot trigger a refusal this way: only attributes are
reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Callable, Iterator
from xml.parsers import expat

from .errors import ScenarioError

__all__ = ["Element", "Watch", "parse_document", "scan_elements", "MAX_TOKEN_BYTES", "FEED_BYTES"]

#: Longest single tag (or comment, processing instruction) accepted; SUMO polygons can be megabytes long.
MAX_TOKEN_BYTES = 16 << 20
#: Bytes handed to expat at a time.
FEED_BYTES = 1 << 20

#: Declared encodings whose bytes 0x00-0x7f mean ASCII, so byte needles find attribute names.
_ASCII_COMPATIBLE = ("utf-8", "utf8", "us-ascii", "ascii", "iso-8859-", "iso8859-", "latin-1",
                     "latin1", "windows-125", "cp125")


@dataclass
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
    """Decides per piece which handler expat needs (see the module docstring)."""

    NONE, PLAIN, FULL = 0, 1, 2

    def __init__(self, watch: Watch) -> None:
        self.needles = watch.needles
        self.gate, self.gated = watch.gated
        self.suffix_needles = watch.suffix_needles
        every = self.needles + self.gated + self.suffix_needles + ((self.gate,) if self.gate else ())
        self.keep = max((len(n) for n in every), default=1)
        self.tail = b""  # last bytes of the pending markup (since the last '<')
        self.pending = (False, False, False)  # (needle, gate, gated needle) seen in the pending markup
        self.pending_suffix = False

    def _scan(self, data: bytes) -> tuple[bool, bool, bool, bool]:
        needle = any(n in data for n in self.needles)
        gate = bool(self.gate) and self.gate in data
        gated = gate and not needle and any(n in data for n in self.gated)
        return needle, gate, gated, any(n in data for n in self.suffix_needles)

    def mode(self, piece: bytes) -> int:
        """The handler mode for ``piece``; also advances the pending-markup state past it."""
        edge = self.tail + piece[:self.keep]  # needles spanning the boundary
        a = self._scan(piece)
        b = self._scan(edge)
        needle = a[0] or b[0] or self.pending[0]
        gate = a[1] or b[1] or self.pending[1]
        gated = gate and (a[2] or b[2] or self.pending[2])
        suffix = a[3] or b[3] or self.pending_suffix
        lt = piece.rfind(b"<")
        if lt >= 0:
            rest = piece[lt:]
            r = self._scan(rest)
            self.pending = (r[0], r[1], r[1] and any(n in rest for n in self.gated))
            self.pending_suffix = r[3]
            self.tail = rest[-self.keep:]
        else:
            self.pending = (needle, gate, gated)
            self.pending_suffix = suffix
            self.tail = (self.tail + piece)[-self.keep:]
        if suffix:
            return self.FULL
        return self.PLAIN if needle or gated else self.NONE


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


def _ascii_compatible(head: bytes, declared: str | None) -> bool:
    if head[:2] in (b"\xfe\xff", b"\xff\xfe") or head[:2] in (b"\x00<", b"<\x00") or b"\x00" in head[:4]:
        return False  # UTF-16 (with or without BOM) or worse
    if declared is None:
        return True  # UTF-8 (with or without BOM), the XML default
    return declared.strip().lower().startswith(_ASCII_COMPATIBLE)


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
    declared: list[str | None] = [None]

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

    def xml_decl(_version, encoding, _standalone):
        declared[0] = encoding

    parser.XmlDeclHandler = xml_decl
    parser.StartElementHandler = full
    prefilter = _Prefilter(watch)
    handlers = {_Prefilter.NONE: None, _Prefilter.PLAIN: plain, _Prefilter.FULL: full}
    fed = 0
    ascii_ok = None  # decided after the first piece, where the XML declaration is
    while True:
        piece = source.read(FEED_BYTES)
        if not piece:
            break
        mode = prefilter.mode(piece)
        handler = handlers[mode] if ascii_ok and seen_root else full
        if handler is not parser.StartElementHandler:
            parser.StartElementHandler = handler
        _feed(parser, piece, False, label)
        fed += len(piece)
        _check_token(parser, fed, label)
        if ascii_ok is None:
            ascii_ok = _ascii_compatible(piece, declared[0])
    parser.StartElementHandler = full
    _feed(parser, b"", True, label)
