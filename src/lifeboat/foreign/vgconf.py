"""lvm2's text metadata (what `vgcfgbackup` writes; Clonezilla keeps it as `lvm_<VG>.conf`) read into the
typed VolumeGroup of lifeboat.volumes.lvm_model, the same tree a native capture reads from lvm2's reports.

The text is lvm2's config syntax: `key = value` (a "string", a number, or a [list, ...]), sections
`name { ... }`, `#` comments. One top-level section is the group:

    czvg {
        id = "…"  extent_size = 8192 (sectors)  tags = [...]
        physical_volumes { pv0 { id, device (a hint), dev_size, pe_start (sectors), pe_count } }
        logical_volumes { root { id, status = [..., "VISIBLE"], tags, segment_count,
                                 segment1 { start_extent, extent_count, type = "striped", stripe_count,
                                            stripes = ["pv0", 0] } } }
    }

Sizes in the text are 512-byte sectors; the VolumeGroup holds bytes. Errors name the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lifeboat.errors import ImageCorrupt
from lifeboat.volumes.lvm_model import LogicalVolume, PhysicalVolume, Segment, VolumeGroup

SECTOR = 512
_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)(?![\w.+-])'
                    r'|(?P<word>[A-Za-z0-9_.+\-]+)|(?P<punct>[{}\[\]=,])')
Value = str | int | float | list
Section = dict  # name -> Value | Section, this module's own parse tree (never handed out)


@dataclass(frozen=True)
class _Token:
    kind: str  # str | num | word | punct
    text: str
    line: int


def _tokens(text: str, where: str) -> list[_Token]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ImageCorrupt(f"{where}, line {line}: unexpected {text[pos]!r} in LVM metadata")
        if m.lastgroup:
            out.append(_Token(m.lastgroup, m.group(m.lastgroup), line))
        line += m.group(0).count("\n")
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, where: str):
        self.tokens, self.where, self.i = _tokens(text, where), where, 0

    def _fail(self, what: str) -> ImageCorrupt:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        at = f"line {tok.line}, at {tok.text!r}" if tok else "end of file"
        return ImageCorrupt(f"{self.where}, {at}: {what} (not the LVM metadata vgcfgbackup writes)")

    def _next(self) -> _Token:
        if self.i >= len(self.tokens):
            raise self._fail("unexpected end")
        self.i += 1
        return self.tokens[self.i - 1]

    def _peek(self, text: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i].kind == "punct" and self.tokens[self.i].text == text

    def section(self, top: bool) -> Section:
        out: Section = {}
        while self.i < len(self.tokens) and not self._peek("}"):
            name = self._next()
            if name.kind not in ("word", "num"):
                raise self._fail("a name was expected")
            if self._peek("{"):
                self.i += 1
                out[name.text] = self.section(False)
                if not self._peek("}"):
                    raise self._fail("'}' was expected")
                self.i += 1
            elif self._peek("="):
                self.i += 1
                out[name.text] = self.value()
            else:
                raise self._fail("'=' or '{' was expected")
        if top and self.i < len(self.tokens):
            raise self._fail("'}' without its '{'")
        return out

    def value(self) -> Value:
        tok = self._next()
        if tok.kind == "str":
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if tok.kind == "num":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "punct" and tok.text == "[":
            items: list = []
            while not self._peek("]"):
                items.append(self.value())
                if self._peek(","):
                    self.i += 1
                elif not self._peek("]"):
                    raise self._fail("',' or ']' was expected")
            self.i += 1
            return items
        self.i -= 1
        raise self._fail("a value was expected")


def parse_config(text: str, where: str) -> Section:
    """lvm2's config text as a tree of sections (internal to foreign/: read it with the helpers here)."""
    return _Parser(text, where).section(True)


class _Fields:
    """One section's values, each read as the type lvm2 writes; a missing or odd one names its path."""

    def __init__(self, section: Section, path: str, where: str):
        self.section, self.path, self.where = section, path, where

    def _get(self, key: str, kind: type, default):
        value = self.section.get(key, default)
        if value is None or not isinstance(value, kind) or (kind is not dict and isinstance(value, dict)):
            raise ImageCorrupt(f"{self.where}: {self.path}/{key} is missing or not a {kind.__name__}")
        return value

    def int(self, key: str, default: int | None = None) -> int:
        return self._get(key, int, default)

    def str(self, key: str, default: str | None = None) -> str:
        return self._get(key, str, default)

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in self._get(key, list, []))

    def list(self, key: str) -> list:
        return self._get(key, list, [])

    def sub(self, key: str) -> _Fields:
        return _Fields(self._get(key, dict, {}), f"{self.path}/{key}", self.where)

    def subs(self) -> list[tuple[str, _Fields]]:
        return [(k, _Fields(v, f"{self.path}/{k}", self.where)) for k, v in self.section.items() if isinstance(v, dict)]


def group_sections(text: str, where: str) -> list[str]:
    """The names of the volume groups the text describes (its top-level sections)."""
    return [k for k, v in parse_config(text, where).items() if isinstance(v, dict)]


def parse_metadata(text: str, where: str) -> VolumeGroup:
    """The one volume group in vgcfgbackup's `text` (`where` names the file in errors)."""
    tree = parse_config(text, where)
    names = [k for k, v in tree.items() if isinstance(v, dict)]
    if len(names) != 1:
        raise ImageCorrupt(f"{where}: LVM metadata describes {len(names)} volume groups, expected one")
    vg = _Fields(tree[names[0]], names[0], where)
    extent = vg.int("extent_size") * SECTOR
    if extent <= 0:
        raise ImageCorrupt(f"{where}: {names[0]}/extent_size is not positive")
    pv_names: dict[str, str] = {}
    pvs = []
    for key, pv in vg.sub("physical_volumes").subs():
        pv_names[key] = pv.str("device", "")
        pvs.append((key, pv))
    lvs = tuple(_volume(name, lv, extent, pv_names) for name, lv in vg.sub("logical_volumes").subs())
    physical = tuple(
        PhysicalVolume(pv.str("device", ""), pv.str("id"), pv.int("pe_count") * extent + pv.int("pe_start") * SECTOR,
                       pv.int("dev_size", 0) * SECTOR, pv.int("pe_start") * SECTOR, pv.int("pe_count"),
                       _allocated(key, lvs, pv_names), pv.strings("tags"))
        for key, pv in pvs)
    total = sum(pv.extents for pv in physical)
    used = sum(lv.extents for lv in lvs)
    return VolumeGroup(names[0], vg.str("id"), extent, total, total - used, vg.strings("tags"), physical, lvs,
                       len(physical))


def _allocated(key: str, lvs: tuple[LogicalVolume, ...], pv_names: dict[str, str]) -> int:
    device = pv_names[key]
    total = 0
    for lv in lvs:
        for seg in lv.segments:
            parts = [d for d in seg.devices.split(",") if d]
            on_pv = sum(1 for d in parts if d.rsplit("(", 1)[0] == device)
            total += seg.extents * on_pv // max(1, len(parts))
    return total


def _volume(name: str, lv: _Fields, extent: int, pv_names: dict[str, str]) -> LogicalVolume:
    status = lv.strings("status")
    segments = []
    for key, seg in lv.subs():
        if not key.startswith("segment"):
            continue
        kind = seg.str("type")
        stripes = seg.list("stripes") if kind == "striped" else []
        pairs = list(zip(stripes[0::2], stripes[1::2]))
        devices = ",".join(f"{pv_names.get(str(pv), str(pv))}({start})" for pv, start in pairs)
        count = seg.int("stripe_count", len(pairs) or 1) if kind == "striped" else 0
        shown = "linear" if kind == "striped" and count == 1 else kind
        segments.append(Segment(seg.int("start_extent"), seg.int("extent_count"), shown, count, devices))
    segments.sort(key=lambda s: s.start_extent)
    extents = sum(s.extents for s in segments)
    visible = "VISIBLE" in status
    return LogicalVolume(name if visible else f"[{name}]", lv.str("id"), extents * extent, _attr(status, segments),
                         lv.strings("tags"), False, tuple(segments))


def _attr(status: tuple[str, ...], segments: list[Segment]) -> str:
    """lvm2's lv_attr as far as the text tells what lvm_model.LogicalVolume.unsupported() reads: the
    volume type letter ("-" a plain volume; "t" thin pool, "V" thin volume, "r" RAID, "m" mirror,
    "s" snapshot, "v" virtual), then w/r."""
    kinds = {s.type for s in segments}
    raid = any(k.startswith("raid") for k in kinds)
    letter = ("t" if "thin-pool" in kinds else "V" if "thin" in kinds else "r" if raid
              else "m" if "mirror" in kinds else "s" if "snapshot" in kinds else "C" if "cache" in kinds
              else "v" if not segments else "-")
    return f"{letter}{'w' if 'WRITE' in status else 'r'}i-------"
