"""`lifeboat mount NAME DIR --repo R` and `lifeboat umount DIR`."""

from __future__ import annotations


def cmd_mount(args) -> int:
    from lifeboat.cli import _repo
    from lifeboat.imagefs.mount import mount_image

    repo = _repo(args)
    m = mount_image(str(repo.root), args.name, args.dir)
    for fs in m.filesystems:
        print(f"{fs.path}  ({fs.fstype}, read-only)")
    for space, why in m.skipped:
        print(f"{space}: not mounted: {why}")
    print(f"Image {args.name!r} mounted at {m.dir} in {m.ready_seconds:.2f} s "
          f"(raw partitions and fetch counters in {m.view}); `lifeboat umount {m.dir}` when done")
    return 0


def cmd_umount(args) -> int:
    from lifeboat.imagefs.mount import umount_image

    m = umount_image(args.dir)
    print(f"Image {m.image!r} unmounted from {m.dir}")
    return 0


def add_subcommand(sub) -> None:
    from lifeboat.options import repo_option

    p = sub.add_parser("mount", help="show an image's filesystems read-only under a directory", parents=[repo_option()])
    p.add_argument("name", metavar="NAME")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_mount)
    p = sub.add_parser("umount", help="undo `lifeboat mount`")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_umount)
