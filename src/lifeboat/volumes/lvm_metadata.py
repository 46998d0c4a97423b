"""vgcfgbackup's text rewritten for a smaller physical volume: pure, no lvm2 needed, no root.

A group restored onto a smaller disk cannot take its metadata as it was: its PV's extent count and the
volumes' segments point past the new end. `resized_metadata` keeps everything else (names, UUIDs, tags,
status, creation times, the PV's pe_start) and changes only:
  - the PV's `dev_size` and `pe_count`;
  - every logical volume's segments: one linear segment each, laid out one after another on the PV
    from extent 0, at the volume's new extent count (data is written through the volumes' own nodes
    afterwards, so where a volume lies on the PV does not matter to its content).
Only a group on one PV whose volumes are all linear (striped with one stripe) can be laid out so;
anything else is refused with the reason.
"""

from __future__ import annotations

import re

from lifeboat.errors import LifeboatError

_OPEN = re.compile(r"^\s*([A-Za-z0-9_.+\-]+)\s*\{\s*$")
_SEGMENT = re.compile(r"^segment\d+$")


def _sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """Each line with the path of sections it is inside ("lbvg", "logical_volumes", "root", ...)."""
    path: list[str] = []
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.split("#", 1)[0].strip() if '"' not in line else line.strip()
        opened = _OPEN.match(stripped)
        if opened:
            out.append((tuple(path), line))
            path.append(opened.group(1))
        elif stripped == "}":
            if not path:
                raise LifeboatError("volume group metadata: a '}' closes nothing")
            path.pop()
            out.append((tuple(path), line))
        else:
            out.append((tuple(path), line))
    if path:
        raise LifeboatError(f"volume group metadata: section {'/'.join(path)} is not closed")
    return out


def _check_linear(lines: list[tuple[tuple[str, ...], str]]) -> tuple[str, list[str]]:
    """The one PV's name ("pv0") and the volumes in the order they appear; raises for what cannot be laid
    out anew."""
    pvs = sorted({p[2] for p, _ in lines if len(p) >= 3 and p[1] == "physical_volumes"})
    if len(pvs) != 1:
        raise LifeboatError(f"volume group metadata: {len(pvs)} physical volumes; only a group on one PV can "
                            "be restored onto a smaller disk")
    volumes: list[str] = []
    for path, line in lines:
        if len(path) >= 3 and path[1] == "logical_volumes" and path[2] not in volumes:
            volumes.append(path[2])
        if len(path) == 4 and path[1] == "logical_volumes" and _SEGMENT.match(path[3]):
            key, _, value = line.partition("=")
            key, value = key.strip(), value.split("#", 1)[0].strip().strip('"')
            if (key == "type" and value != "striped") or (key == "stripe_count" and value != "1"):
                raise LifeboatError(f"volume group metadata: logical volume {path[2]} has a {key} {value!r} "
                                    "segment; only linear volumes can be laid out anew on a smaller PV")
    return pvs[0], volumes


def _segment(pv: str, start: int, extents: int, indent: str) -> str:
    i2, i3 = indent + "\t", indent + "\t\t"
    return (f"{indent}segment1 {{\n{i2}start_extent = 0\n{i2}extent_count = {extents}\n\n"
            f"{i2}type = \"striped\"\n{i2}stripe_count = 1\t# linear\n\n"
            f"{i2}stripes = [\n{i3}\"{pv}\", {start}\n{i2}]\n{indent}}}\n")


def _is_segment_edge(line: str) -> bool:
    """A segment's opening line or (inside a volume's section, where only segments nest) closing brace."""
    opened = _OPEN.match(line.strip())
    return bool(opened and _SEGMENT.match(opened.group(1))) or line.strip() == "}"


def resized_metadata(text: str, dev_sectors: int, pe_count: int, extents: dict[str, int]) -> str:
    """`text` (vgcfgbackup's) for a PV of `dev_sectors` 512-byte sectors holding `pe_count` extents, each
    volume (name -> new extent count) in one linear segment, packed from extent 0."""
    lines = _sections(text)
    pv, volumes = _check_linear(lines)
    unknown = sorted(set(volumes) - set(extents))
    if unknown:
        raise LifeboatError(f"volume group metadata: no new size for logical volume(s) {', '.join(unknown)}")
    if sum(extents[v] for v in volumes) > pe_count:
        raise LifeboatError(f"volume group metadata: the volumes need {sum(extents[v] for v in volumes)} extents, "
                            f"the PV holds {pe_count}")
    starts, pos = {}, 0
    for name in volumes:
        starts[name], pos = pos, pos + extents[name]
    out = []
    for path, line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line else ""
        depth_pv = len(path) == 3 and path[1] == "physical_volumes"
        in_lv = len(path) >= 3 and path[1] == "logical_volumes"
        if depth_pv and key == "dev_size":
            out.append(f"{line[:len(line) - len(line.lstrip())]}dev_size = {dev_sectors}\n")
        elif depth_pv and key == "pe_count":
            out.append(f"{line[:len(line) - len(line.lstrip())]}pe_count = {pe_count}\n")
        elif in_lv and len(path) == 3 and key == "segment_count":
            out.append(f"{line[:len(line) - len(line.lstrip())]}segment_count = 1\n")
        elif in_lv and (len(path) > 3 or (len(path) == 3 and _is_segment_edge(line))):
            continue  # the old segments: their opening lines, bodies and closing braces
        else:
            out.append(line)
        if in_lv and len(path) == 3 and key == "segment_count":
            indent = line[:len(line) - len(line.lstrip())]
            out.append("\n" + _segment(pv, starts[path[2]], extents[path[2]], indent))
    return "".join(out)
