"""XMP sidecars: keywords where photo managers read them, merged into what is already there.

We write three keyword fields, the ones digiKam, darktable, Lightroom, Capture One and Immich
(through ExifTool) read:
    dc:subject               flat keywords            sunflower
    lr:hierarchicalSubject   hierarchy joined by "|"  organizer|sunflower
    digiKam:TagsList         hierarchy joined by "/"  organizer/sunflower
and record what we added in our own namespace (organizer:*), so a later export replaces only
our keywords and `--remove` takes exactly those out again, even keywords with no prefix.

A sidecar made by another tool is edited in place in the tree: every other element, attribute,
namespace declaration, comment and the xpacket wrapper are written back as they were; only
`rdf:li` items of the three fields are added or removed. The standard library's serializer
would move every namespace to the root and rename prefixes, so a small one lives here.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X = "adobe:ns:meta/"
XML = "http://www.w3.org/XML/1998/namespace"
OURS = "http://ns.organizer.invalid/xmp/1.0/"
# (namespace, local name, preferred prefix, our record's local name, hierarchy separator)
FIELDS = (
    ("http://purl.org/dc/elements/1.1/", "subject", "dc", "subject", None),
    ("http://ns.adobe.com/lightroom/1.0/", "hierarchicalSubject", "lr", "hierarchicalSubject", "|"),
    ("http://www.digikam.org/ns/1.0/", "TagsList", "digiKam", "tagsList", "/"),
)
MAX_SIDECAR_BYTES = 16 << 20   # sidecars are kilobytes; anything this big is not one
PACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
PACKET_END = '\n<?xpacket end="w"?>\n'
EMPTY = (PACKET_BEGIN + f'<x:xmpmeta xmlns:x="{X}" x:xmptk="organizer">\n'
         f' <rdf:RDF xmlns:rdf="{RDF}">\n  <rdf:Description rdf:about=""/>\n </rdf:RDF>\n</x:xmpmeta>' + PACKET_END)


class XmpError(Exception):
    """A sidecar that cannot be merged safely (it is left as it is)."""


@dataclass
class Sidecar:
    root: ET.Element
    prologue: str                       # text before the root element (xml declaration, xpacket begin)
    epilogue: str                       # text after it (xpacket end)
    declared: dict = field(default_factory=dict)  # id(element) -> [(prefix, uri)] declared on it


def keyword_values(names, prefix: str) -> list[list[str]]:
    """The values of each field in FIELDS for a set of names."""
    names = sorted(set(n for n in names if n))
    out = []
    for _, _, _, _, sep in FIELDS:
        out.append([f"{prefix}{sep}{n}" if prefix and sep else n for n in names])
    return out


# -- reading -----------------------------------------------------------------------------------
def parse(data: bytes, name: str = "sidecar") -> Sidecar:
    if len(data) > MAX_SIDECAR_BYTES:
        raise XmpError(f"{name}: {len(data)} bytes is too big for an XMP sidecar; left as it is")
    text = data.decode("utf-8-sig", errors="strict") if data else ""
    if re.search(r"<!(DOCTYPE|ENTITY)", text):  # XMP has no DTDs; entities are a way to blow up a parser
        raise XmpError(f"{name}: holds a DTD, which XMP does not allow; left as it is")
    start = re.search(r"<(?![?!])", text)
    if not start:
        raise XmpError(f"{name}: no XML element in it; left as it is")
    closing = text.rfind("</")
    end = text.find(">", closing) + 1 if closing > start.start() else len(text)
    declared: dict = {}
    pending: list = []
    builder = ET.TreeBuilder(insert_comments=True, insert_pis=True)
    parser = ET.XMLPullParser(events=("start-ns", "start"), _parser=ET.XMLParser(target=builder))
    try:
        parser.feed(text[start.start():end])  # the root alone: the xpacket wrapper is kept as text
        for event, item in parser.read_events():
            if event == "start-ns":
                pending.append(item)
            elif pending:
                declared[id(item)] = pending
                pending = []
        parser.close()
        root = builder.close()
    except (ET.ParseError, UnicodeError) as e:
        raise XmpError(f"{name}: not well-formed XML ({e}); left as it is") from None
    epilogue = text[end:]
    # the prologue is kept as written except an encoding declaration: we always write UTF-8
    prologue = re.sub(r"<\?xml[^>]*\?>\s*", '<?xml version="1.0" encoding="UTF-8"?>\n', text[:start.start()],
                      count=1)
    if root.tag not in (f"{{{X}}}xmpmeta", f"{{{RDF}}}RDF"):
        raise XmpError(f"{name}: the root element is {root.tag}, not x:xmpmeta; left as it is")
    return Sidecar(root, prologue, epilogue, declared)


def descriptions(sc: Sidecar) -> list[ET.Element]:
    rdf = sc.root if sc.root.tag == f"{{{RDF}}}RDF" else sc.root.find(f"{{{RDF}}}RDF")
    if rdf is None:
        raise XmpError("no rdf:RDF element")
    return rdf.findall(f"{{{RDF}}}Description")


def _container(prop: ET.Element) -> ET.Element | None:
    return next((c for c in prop if c.tag in (f"{{{RDF}}}Bag", f"{{{RDF}}}Seq", f"{{{RDF}}}Alt")), None)


def _items(prop: ET.Element) -> list[ET.Element]:
    container = _container(prop)
    return [] if container is None else container.findall(f"{{{RDF}}}li")


def _remove(parent: ET.Element, child: ET.Element) -> None:
    """Remove `child` and the whitespace before it, so the siblings keep their layout."""
    kids = list(parent)
    i = kids.index(child)
    if i == len(kids) - 1:  # the last one: its tail (the parent's closing indent) moves to the previous
        if i:
            kids[i - 1].tail = child.tail
        elif child.tail is not None and not child.tail.strip():
            parent.text = None if not parent.text or not parent.text.strip() else parent.text
    parent.remove(child)


def read_field(sc: Sidecar, ns: str, local: str) -> list[str]:
    out = []
    for d in descriptions(sc):
        for prop in d.findall(f"{{{ns}}}{local}"):
            out += [(li.text or "") for li in _items(prop)]
        if f"{{{ns}}}{local}" in d.attrib:  # a single value in attribute form
            out.append(d.attrib[f"{{{ns}}}{local}"])
    return out


def keywords(data: bytes) -> dict[str, list[str]]:
    """{"dc:subject": [...], ...} of a sidecar, as written (ours and everyone else's)."""
    sc = parse(data)
    return {f"{pfx}:{local}": read_field(sc, ns, local) for ns, local, pfx, _, _ in FIELDS}


# -- merging -----------------------------------------------------------------------------------
def _indent(el: ET.Element, parents: dict) -> str:
    """The indentation `el` has in the file (spaces after the last newline before it)."""
    p = parents.get(el)
    if p is None:
        return ""
    kids = list(p)
    i = kids.index(el)
    ws = kids[i - 1].tail if i else p.text
    if ws and "\n" in ws and not ws.strip():
        return ws.rsplit("\n", 1)[1]
    return _indent(p, parents) + " "


def _append(parent: ET.Element, child: ET.Element, parents: dict) -> None:
    """Append `child` with the indentation its siblings use (one more space than `parent`)."""
    kids = list(parent)
    outer = _indent(parent, parents)
    own = "\n" + outer + " "
    if kids:
        child.tail = kids[-1].tail
        kids[-1].tail = parent.text if parent.text and "\n" in parent.text and not parent.text.strip() else own
    else:
        parent.text = own
        child.tail = "\n" + outer
    parent.append(child)
    parents[child] = parent


def _bag(prop: ET.Element, parents: dict) -> ET.Element:
    bag = _container(prop)
    if bag is None:
        bag = ET.Element(f"{{{RDF}}}Bag")
        _append(prop, bag, parents)
    return bag


def _put(parent: ET.Element, tag: str, values: list[str], parents: dict) -> None:
    """Append `values` as rdf:li items to the bag of `parent`'s `tag` property (made if missing)."""
    prop = parent.find(tag)
    if prop is None:
        prop = ET.Element(tag)
        _append(parent, prop, parents)
    bag = _bag(prop, parents)
    for v in values:
        li = ET.Element(f"{{{RDF}}}li")
        li.text = v
        _append(bag, li, parents)


def merge(data: bytes | None, names, prefix: str = "organizer", name: str = "sidecar") -> tuple[bytes, bool]:
    """The sidecar with our keywords set to `names` (empty: ours removed), and whether anything
    of someone else's is left in it (False: the file holds only what we wrote)."""
    sc = parse(data if data else EMPTY.encode(), name)
    descs = descriptions(sc)
    if not descs:
        raise XmpError(f"{name}: no rdf:Description element; left as it is")
    parents = {c: p for p in sc.root.iter() for c in p}
    wanted = keyword_values(names, prefix)
    first = descs[0]
    records = []
    for (ns, local, _, record, _), values in zip(FIELDS, wanted):
        tag = f"{{{ns}}}{local}"
        ours_before = set()
        for d in descs:
            for rec in d.findall(f"{{{OURS}}}{record}"):
                ours_before |= {li.text or "" for li in _items(rec)}
                _remove(d, rec)
        present, home = [], None
        for d in descs:
            for prop in d.findall(tag):
                bag = _container(prop)
                if bag is None:
                    continue
                removed = False
                for li in list(bag.findall(f"{{{RDF}}}li")):
                    if (li.text or "") in ours_before:
                        _remove(bag, li)
                        removed = True
                    else:
                        present.append(li.text or "")
                if removed and not len(bag):  # we emptied it: the field goes, as if never written
                    _remove(d, prop)
                elif home is None:
                    home = d
        added = [v for v in values if v not in present]
        if added:  # into the field where it already is (a second copy of a property would be ignored)
            _put(home if home is not None else first, tag, added, parents)
            records.append((record, added))
    for record, added in records:  # after the fields, so a person reading sees the keywords first
        _put(first, f"{{{OURS}}}{record}", added, parents)
    for d in descs:
        _tidy(d)
    foreign = _has_foreign(sc, descs)
    return serialize(sc).encode("utf-8"), foreign


def _tidy(d: ET.Element) -> None:
    """An emptied Description closes on its own line again."""
    if not len(d) and d.text is not None and not d.text.strip():
        d.text = None


def _has_foreign(sc: Sidecar, descs: list[ET.Element]) -> bool:
    for d in descs:
        if any(k != f"{{{RDF}}}about" for k in d.attrib):
            return True
        if any(not isinstance(c.tag, str) or not c.tag.startswith(f"{{{OURS}}}") for c in d):
            return True
    return len(descs) > 1


# -- writing -----------------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    return tuple(tag[1:].split("}", 1)) if tag.startswith("{") else ("", tag)


def _escape(text: str, attr: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attr:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text


def serialize(sc: Sidecar) -> str:
    out = io.StringIO()
    out.write(sc.prologue or PACKET_BEGIN)
    preferred = {ns: pfx for ns, _, pfx, _, _ in FIELDS} | {OURS: "organizer", RDF: "rdf", X: "x"}
    _write(out, sc.root, {XML: "xml"}, sc.declared, preferred)
    out.write(sc.epilogue if sc.prologue else PACKET_END)
    return out.getvalue()


def _write(out, el, scope: dict, declared: dict, preferred: dict) -> None:
    if el.tag is ET.Comment:
        out.write(f"<!--{el.text or ''}-->")
        out.write(_escape(el.tail or ""))
        return
    if el.tag is ET.ProcessingInstruction:
        out.write(f"<?{el.text or ''}?>")
        out.write(_escape(el.tail or ""))
        return
    scope = dict(scope)
    decls = []
    for prefix, uri in declared.get(id(el), []):
        scope[uri] = prefix
        decls.append((prefix, uri))
    taken = set(scope.values())

    def qname(tag: str) -> str:
        ns, local = _split(tag)
        if not ns:
            return local
        if ns not in scope:  # a namespace we bring in: declared on the element that first needs it
            base = preferred.get(ns, "ns")
            pfx, i = base, 1
            while pfx in taken:
                pfx, i = f"{base}{i}", i + 1
            scope[ns] = pfx
            taken.add(pfx)
            decls.append((pfx, ns))
        return f"{scope[ns]}:{local}"

    name = qname(el.tag)
    attrs = [(qname(k), v) for k, v in el.attrib.items()]
    for child in el:  # declare what the children bring in here, as XMP writers do on rdf:Description
        if isinstance(child.tag, str) and el.tag == f"{{{RDF}}}Description":
            qname(child.tag)
    parts = [name] + [f'xmlns:{p}="{_escape(u, True)}"' if p else f'xmlns="{_escape(u, True)}"' for p, u in decls]
    parts += [f'{k}="{_escape(v, True)}"' for k, v in attrs]
    out.write("<" + ("\n    " if len(parts) > 3 else " ").join(parts))
    if el.text is None and not len(el):
        out.write("/>")
    else:
        out.write(">" + _escape(el.text or ""))
        for child in el:
            _write(out, child, scope, declared, preferred)
        out.write(f"</{name}>")
    out.write(_escape(el.tail or ""))
