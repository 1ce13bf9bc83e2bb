"""Scrapy's selector idioms over selectolax (lexbor): ``css("a::attr(href)").getall()``,
``css("h1::text").get()``, ``.re()``, ``.attrib`` and chained ``.css()``.

lexbor does the matching; this module adds the two pseudo-elements it lacks (``::text`` and
``::attr(name)``, matched as Scrapy matches them) and the Selector/SelectorList API. A Selector
also answers selectolax's node API (``text()``, ``attributes``, ``css_first()``, ``html``, ...),
so spiders written against bare lexbor nodes keep working.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from re import Pattern
from typing import Any, SupportsIndex, overload

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from crawler.errors import SpiderError

__all__ = ["Selector", "SelectorError", "SelectorList", "select", "select_first"]

# A trailing ``::text`` or ``::attr(name)`` on one comma-separated group of a selector.
_PSEUDO = re.compile(r"::(?:(text)|attr\(\s*([^()\s]+)\s*\))\s*$", re.IGNORECASE)
# Scrapy's .re() unescapes entities but keeps &lt; and &amp;, so that markup stays markup.
_ENTITY = re.compile(r"&(?!(?:lt|amp);)(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")


class SelectorError(SpiderError, ValueError):
    """A CSS selector that cannot be parsed, or uses a pseudo-element we do not know."""


class Selector:
    """One match: an element, or the string ``::text``/``::attr(name)`` selected.

    >>> quote.css("span.text::text").get()          # doctest: +SKIP
    >>> quote.attrib["class"], quote.get()          # attributes; outer HTML  # doctest: +SKIP
    """

    __slots__ = ("root",)

    def __init__(self, root: LexborNode | str) -> None:
        self.root = root

    def css(self, query: str) -> SelectorList:
        """Matches in this element and below it (the element itself may match, as in Scrapy)."""
        root = self.root
        return SelectorList() if isinstance(root, str) else select(root, query)

    def css_first(self, query: str) -> Selector | None:
        """The first match, or None (selectolax's name; Scrapy writes ``css(query)[0]``)."""
        root = self.root
        if isinstance(root, str):
            return None
        if "::" in query:
            return select_first(root, query)
        try:  # inlined select_first: spiders call this in their inner loops
            first = root.css_first(query)
        except SelectolaxError:
            raise _bad(query) from None
        return None if first is None else Selector(first)

    def get(self) -> str:
        """The selected string, or an element's outer HTML."""
        root = self.root
        return root if isinstance(root, str) else root.html or ""

    def getall(self) -> list[str]:
        return [self.get()]

    extract = get

    def re(self, regex: str | Pattern[str], replace_entities: bool = True) -> list[str]:
        """Matches of ``regex`` in ``get()``: its groups if it has any (a group named
        ``extract`` alone if it has one), else the whole matches."""
        return extract_regex(regex, self.get(), replace_entities)

    @overload
    def re_first(
        self, regex: str | Pattern[str], default: str, replace_entities: bool = True
    ) -> str: ...
    @overload
    def re_first(
        self, regex: str | Pattern[str], default: None = None, replace_entities: bool = True
    ) -> str | None: ...
    def re_first(
        self,
        regex: str | Pattern[str],
        default: str | None = None,
        replace_entities: bool = True,
    ) -> str | None:
        found = self.re(regex, replace_entities)
        return found[0] if found else default

    @property
    def attrib(self) -> dict[str, str | None]:
        root = self.root
        return {} if isinstance(root, str) else root.attributes

    # selectolax's node API, for spiders written against bare lexbor nodes.

    @property
    def attributes(self) -> dict[str, str | None]:
        return self.attrib

    @property
    def html(self) -> str | None:
        root = self.root
        return root if isinstance(root, str) else root.html

    @property
    def tag(self) -> str | None:
        root = self.root
        return None if isinstance(root, str) else root.tag

    def text(self, deep: bool = True, separator: str = "", strip: bool = False) -> str:
        root = self.root
        if isinstance(root, str):
            return root.strip() if strip else root
        return root.text(deep, separator, strip)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names defined above not: the rest of the lexbor node's API.
        root = object.__getattribute__(self, "root")
        if isinstance(root, str):
            raise AttributeError(f"a selected string has no {name!r}")
        return getattr(root, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        mine, theirs = self.root, other.root
        if isinstance(mine, str) or isinstance(theirs, str):
            return mine == theirs
        return mine.mem_id == theirs.mem_id

    def __hash__(self) -> int:
        root = self.root
        return hash(root if isinstance(root, str) else root.mem_id)

    def __repr__(self) -> str:
        data = self.get()
        return f"<Selector data={data[:40] + '...' if len(data) > 40 else data!r}>"


class SelectorList(list[Selector]):
    """The matches of a selector, in document order: a list with Scrapy's methods.

    >>> response.css("a::attr(href)").getall()            # doctest: +SKIP
    >>> response.css("h1::text").get(default="")           # doctest: +SKIP
    >>> response.css("div.quote").css("small.author::text").getall()   # doctest: +SKIP
    """

    __slots__ = ()

    @overload
    def __getitem__(self, index: SupportsIndex) -> Selector: ...
    @overload
    def __getitem__(self, index: slice) -> SelectorList: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Selector | SelectorList:
        if isinstance(index, slice):
            return SelectorList(list.__getitem__(self, index))
        return list.__getitem__(self, index)

    def css(self, query: str) -> SelectorList:
        return SelectorList(found for selector in self for found in selector.css(query))

    @overload
    def get(self, default: str) -> str: ...
    @overload
    def get(self, default: None = None) -> str | None: ...
    def get(self, default: str | None = None) -> str | None:
        """The first match's ``get()``, or ``default`` when nothing matched."""
        return self[0].get() if self else default

    def getall(self) -> list[str]:
        return [selector.get() for selector in self]

    extract_first = get
    extract = getall

    def re(self, regex: str | Pattern[str], replace_entities: bool = True) -> list[str]:
        return [found for selector in self for found in selector.re(regex, replace_entities)]

    @overload
    def re_first(
        self, regex: str | Pattern[str], default: str, replace_entities: bool = True
    ) -> str: ...
    @overload
    def re_first(
        self, regex: str | Pattern[str], default: None = None, replace_entities: bool = True
    ) -> str | None: ...
    def re_first(
        self,
        regex: str | Pattern[str],
        default: str | None = None,
        replace_entities: bool = True,
    ) -> str | None:
        for selector in self:
            found = selector.re(regex, replace_entities)
            if found:
                return found[0]
        return default

    @property
    def attrib(self) -> dict[str, str | None]:
        """The first element's attributes; ``{}`` when nothing matched."""
        return self[0].attrib if self else {}


def select(node: LexborNode | LexborHTMLParser, query: str) -> SelectorList:
    """``query`` matched in ``node`` and below it, ``::text`` and ``::attr(name)`` included.

    Raises SelectorError (a SpiderError, so a callback error) if lexbor cannot parse it.
    """
    if "::" not in query:
        try:
            return SelectorList(map(Selector, node.css(query)))
        except SelectolaxError:
            raise _bad(query) from None
    base, text, attr = _split_pseudo(query)
    if base.strip():
        try:
            elements = node.css(base)
        except SelectolaxError:
            raise _bad(query) from None
    else:
        # "::text" alone: the context node's own text, as in Scrapy
        root = node.root if isinstance(node, LexborHTMLParser) else node
        elements = [] if root is None else [root]
    if attr is not None:
        return SelectorList(
            Selector(value)
            for element in elements
            if (value := element.attrs.get(attr)) is not None
        )
    return SelectorList(map(Selector, _text_nodes(elements))) if text else SelectorList()


def select_first(node: LexborNode | LexborHTMLParser, query: str) -> Selector | None:
    """The first match of ``query``, or None."""
    if "::" in query:
        found = select(node, query)
        return found[0] if found else None
    try:
        first = node.css_first(query)
    except SelectolaxError:
        raise _bad(query) from None
    return None if first is None else Selector(first)


def _split_pseudo(query: str) -> tuple[str, bool, str | None]:
    """The selector without its pseudo-element, and which one it was; every group of a
    comma-separated selector must end with the same one."""
    groups = _groups(query)
    found = [_PSEUDO.search(group) for group in groups]
    kinds = {(bool(m.group(1)), m.group(2) and m.group(2).lower()) if m else None for m in found}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind is None:
        raise SelectorError(
            f"CSS selector {query!r}: the pseudo-elements known are ::text and ::attr(name), "
            "the same one ending every comma-separated part"
        )
    text, attr = kind
    base = ", ".join(
        _with_subject(group[: m.start()]) for group, m in zip(groups, found, strict=True) if m
    )
    if "::" in base:
        raise SelectorError(f"CSS selector {query!r}: only ::text and ::attr(name) are known")
    return base, text, attr


def _with_subject(base: str) -> str:
    """``"div ::text"`` means the text of div's descendants, as ``"div *::text"`` does."""
    if base.strip() and (base[-1].isspace() or base.rstrip()[-1] in ">+~"):
        return base.rstrip() + " *"
    return base


def _groups(query: str) -> list[str]:
    """Split a selector at its top-level commas (not those inside quotes or parentheses)."""
    groups, depth, quote, start = [], 0, "", 0
    for at, char in enumerate(query):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            groups.append(query[start:at])
            start = at + 1
    groups.append(query[start:])
    return groups


def _text_nodes(elements: list[LexborNode]) -> Iterable[str]:
    """The text nodes directly inside each element, in document order even when the elements
    nest (``*::text`` matches every element of a page)."""
    if len(elements) > 1:
        matched = {element.mem_id for element in elements}
        outer = [element for element in elements if not _inside(element, matched)]
        if len(outer) < len(elements):
            for element in outer:
                for node in element.traverse(include_text=True):
                    parent = node.parent
                    if node.is_text_node and parent is not None and parent.mem_id in matched:
                        yield node.text_content or ""
            return
    for element in elements:
        for node in element.iter(include_text=True):
            if node.is_text_node:
                yield node.text_content or ""


def _inside(element: LexborNode, matched: set[int]) -> bool:
    parent = element.parent
    while parent is not None:
        if parent.mem_id in matched:
            return True
        parent = parent.parent
    return False


def extract_regex(regex: str | Pattern[str], text: str, replace_entities: bool) -> list[str]:
    """Scrapy's ``.re()`` over one string."""
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    if "extract" in pattern.groupindex:
        match = pattern.search(text)
        strings = [match.group("extract")] if match and match.group("extract") is not None else []
    else:
        strings = []
        for found in pattern.findall(text):
            strings.extend(found if isinstance(found, tuple) else [found])
    if not replace_entities:
        return strings
    return [_ENTITY.sub(lambda m: html.unescape(m.group()), s) for s in strings]


def _bad(query: str) -> SelectorError:
    return SelectorError(f"cannot parse CSS selector {query!r}")
