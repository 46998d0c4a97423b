"""`lifeboat import CZ_DIR/IMAGE NAME --repo R`: a Clonezilla image into a native repository."""

from __future__ import annotations

import argparse

from lifeboat.devices import human_size
from lifeboat.options import repo_option


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import", help="import a Clonezilla image directory as a Lifeboat image", parents=[repo_option()],
        description="Read a Clonezilla image (a directory under /home/partimag), verify every partclone "
                    "checksum, and write it into a Lifeboat repository as image NAME: chunks are shared "
                    "with everything already there; table, identifiers and boot regions are kept.")
    p.add_argument("source", metavar="CZ_IMAGE_DIR")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--level", type=int, default=None, help="zstd level 1-22 (default 3)")
    p.set_defaults(func=run_command)
    return p


def run_command(args) -> int:
    from lifeboat.cli import _cancel_on_signal, _repo
    from lifeboat.config import default_level
    from lifeboat.foreign.importer import import_image
    from lifeboat.repo.store import check_image_name
    from lifeboat.terminal import ConsoleProgress

    check_image_name(args.name)
    repo = _repo(args, create=True)
    level = args.level or default_level()
    print(f"Import Clonezilla image {args.source} as {args.name!r} into {repo.root}")
    sink = ConsoleProgress()
    try:
        manifest = import_image(args.source, args.name, repo, level=level, progress=sink, cancel=_cancel_on_signal())
    finally:
        sink.close()
    stats = manifest.stats
    print(f"Image {args.name!r} imported: {human_size(stats.read_bytes)} of data, {stats.new_chunks} new chunks, "
          f"{human_size(stats.new_chunk_bytes)} added to the repository")
    return 0
