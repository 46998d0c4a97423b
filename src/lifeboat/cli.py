"""The `lifeboat` command: argument parsing, confirmation, exit codes, human and JSON output.

No disk I/O of its own: every command calls the engine. Exit codes: 0 success, 1 failure,
2 refused (bad usage, no confirmation), 130 cancelled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading

from lifeboat import __version__
from lifeboat.config import default_level, default_repo
from lifeboat.devices import human_size
from lifeboat.errors import Cancelled, LifeboatError
from lifeboat.options import json_option, luks_option, repo_option

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def _repo(args, create: bool = False):
    from lifeboat.repo.command import open_repository

    path = default_repo(args.repo)
    if not path:
        raise LifeboatError("no repository given: use --repo DIR or URL, LIFEBOAT_REPO, or `repo` in the config file")
    return open_repository(path, args, create=create)


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


# ---------------------------------------------------------------- commands


def cmd_disks(args) -> int:
    from lifeboat.devices import list_disks

    from lifeboat.engine.restore_marker import read_marker
    from lifeboat.health import read_health
    from lifeboat.layout.sectors import logical_sector_size

    disks = [dataclasses.replace(d, health=read_health(d.path)) for d in list_disks(include_loop=args.loop)]
    markers = {d.path: read_marker(d.path) for d in disks}
    sectors = {d.path: logical_sector_size(d.path) for d in disks}
    volumes = {p.path: _volume_of(p) for d in disks for p in d.partitions}
    if args.json:
        _print_json([{**d.to_json(), "incomplete_restore": markers[d.path].describe() if markers[d.path] else "",
                      "sector_size": sectors[d.path],
                      "volumes": {p.path: volumes[p.path] for p in d.partitions if volumes[p.path]}}
                     for d in disks])
        return EXIT_OK
    for d in disks:
        flag = f"  [not a target: {d.unsafe_reason}]" if d.unsafe_reason else ""
        sector = f"  {sectors[d.path]}-byte sectors" if sectors[d.path] != 512 else ""
        print(f"{d.path:<16} {human_size(d.size):>10}  {d.transport:<6} {d.model} {d.serial}{sector}{flag}")
        print(f"  {d.health.describe()}")
        if markers[d.path]:
            print(f"  INCOMPLETE: {markers[d.path].describe()}")
        for p in d.partitions:
            where = f" on {', '.join(p.mountpoints)}" if p.mountpoints else ""
            print(f"  {p.path:<14} {human_size(p.size):>10}  {p.fstype or '-':<6} {p.label}{where}")
            if volumes[p.path]:
                print(f"      {volumes[p.path]}")
    return EXIT_OK


def _volume_of(partition) -> str:
    """A LUKS/LVM/BitLocker/MD volume's description, read from its header bytes ("" for anything else)."""
    from lifeboat.fs.volumes import VOLUME_FSTYPES, probe

    if partition.fstype not in VOLUME_FSTYPES:
        return ""
    try:
        found = probe(partition.path, partition.size)
    except OSError:
        return ""
    return found.describe if found else ""


def cmd_images(args) -> int:
    from lifeboat.repo.manifest import list_images

    images = list_images(_repo(args))
    if args.json:
        _print_json([i.summary.to_json() if i.summary else {"name": i.name, "problem": i.problem} for i in images])
        return EXIT_OK
    if not images:
        print("no images")
    for image in images:
        summary = image.summary
        if summary is None:
            print(f"{image.name:<24} UNREADABLE: {image.problem}")
            continue
        parts = ", ".join(f"{p.number}:{p.fstype}" for p in summary.partitions)
        origin = f"  ({summary.origin.capitalize()} image)" if summary.origin else ""
        print(f"{image.name:<24} {summary.created}  {summary.source_model or '-'} {human_size(summary.source_size)}  "
              f"{summary.table}  [{parts}]  {human_size(summary.data_bytes)} of data{origin}")
        for p in summary.partitions:
            if p.note:
                print(f"  partition {p.number}: {p.note}")
        for line in _incomplete(args, image.name):
            print(f"  INCOMPLETE: {line}")
    return EXIT_OK


def _incomplete(args, name: str) -> list[str]:
    from lifeboat.engine.rescue import unreadable_lines
    from lifeboat.repo.manifest import load_manifest

    return unreadable_lines(load_manifest(_repo(args), name))


def cmd_capture(args) -> int:
    from lifeboat.engine.capture import capture, inspect_source
    from lifeboat.engine.luks_capture import check_plaintext_allowed
    from lifeboat.repo.store import check_image_name
    from lifeboat.terminal import ConsoleProgress

    check_image_name(args.name)
    rescue = _rescue_options(args)  # bad --rescue-* values: an error before the repository is created
    repo = _repo(args, create=True)
    if not args.rescue:
        _suggest_rescue(args.source)
    info = inspect_source(args.source, ConsoleProgress(), rescue=args.rescue, luks_key=_luks_key(args))
    print(f"Capture {args.source} ({info.model or 'disk'}, {human_size(info.size)}) as {args.name!r} into {repo.root}")
    for p in info.partitions:
        print(f"  partition {p.entry.number}: {p.fstype or 'unknown'} {human_size(p.size)}, "
              f"{'opened with the passphrase' if p.luks else p.kind.mode}, "
              f"{human_size(p.to_read)} to read" + (f" ({p.reason})" if p.reason else ""))
        if p.luks:
            print("\n".join(_container_lines(p, repo)))
        for group in info.groups:
            if p.entry.number in group.partitions.values() and p.entry.number == min(group.partitions.values()):
                print(f"    LVM volume group {group.group.name}, UUID {group.group.uuid}:")
                for v in group.volumes:
                    print(f"      {v.name}: {v.fstype or 'unknown'} {human_size(v.size)}, {v.kind.mode}, "
                          f"{human_size(v.to_read)} to read")
    check_plaintext_allowed(info.partitions, repo, args.allow_plaintext or _plaintext_confirmed(info, repo))
    sink = ConsoleProgress()
    try:
        manifest = capture(args.source, args.name, repo, level=args.level, progress=sink, cancel=_cancel_on_signal(),
                           info=info, rescue=rescue)
    finally:
        sink.close()
    stats = manifest.stats
    print(f"Image {args.name!r} complete: {human_size(stats.read_bytes)} read, "
          f"{stats.new_chunks} new chunks, {human_size(stats.new_chunk_bytes)} added to the repository")
    _print_unreadable(manifest)
    return EXIT_OK


def _plaintext_confirmed(info, repo) -> bool:
    """At a terminal, the user may accept an opened container's contents going decrypted into this repository."""
    if repo.encrypted or not any(p.luks for p in info.partitions) or not sys.stdin.isatty():
        return False
    return input("Type 'plaintext' to store the decrypted contents there anyway: ").strip() == "plaintext"


def _luks_key(args):
    from lifeboat.volumes.luks import read_key_file

    return read_key_file(args.luks_passphrase_file) if args.luks_passphrase_file else None


def _container_lines(part, repo) -> list[str]:
    inner = part.luks.inner
    what = (f"LVM physical volume ({human_size(inner.size)}) is imaged by its volume group's logical volumes"
            if inner.pv else f"{inner.fstype or 'content'} ({human_size(inner.size)}, {inner.kind.mode}) is imaged")
    lines = [f"    {part.volume.describe}: opened read-only with the passphrase; its {what}, and a backup of its "
             "header is kept",
             "    The header backup is sensitive: with one of the container's passphrases it decrypts the data."]
    if not repo.encrypted:
        lines.append(f"    WARNING: {repo.root} is not encrypted: the container's contents would be stored there decrypted.")
    return lines


def _suggest_rescue(source: str) -> None:
    from lifeboat.health import read_health

    health = read_health(source)
    if health.needs_rescue:
        print(f"lifeboat: warning: {source}: {health.describe()}. Capture it with --rescue: it reads the good areas "
              "first, works around damage and records what could not be read.", file=sys.stderr)


def _rescue_options(args):
    from lifeboat.engine.rescue import RescueOptions

    if not args.rescue:
        given = [o for o, v in (("--rescue-timeout", args.rescue_timeout), ("--rescue-retries", args.rescue_retries))
                 if v is not None]
        if given:
            raise LifeboatError(f"{' and '.join(given)} only apply with --rescue; add --rescue or leave them out")
        return None
    if args.rescue_timeout is not None and not args.rescue_timeout > 0:
        raise LifeboatError(f"--rescue-timeout {args.rescue_timeout:g}: must be a positive number of seconds")
    if args.rescue_retries is not None and args.rescue_retries < 0:
        raise LifeboatError(f"--rescue-retries {args.rescue_retries}: must be 0 or more")
    retries = 1 if args.rescue_retries is None else args.rescue_retries
    return RescueOptions(timeout=args.rescue_timeout, retries=retries)


def _print_unreadable(manifest) -> None:
    from lifeboat.engine.rescue import unreadable_lines

    lines = unreadable_lines(manifest)
    if lines:
        print("INCOMPLETE: some sectors could not be read and are stored as zeros:")
        for line in lines:
            print(f"  {line}")


def cmd_verify(args) -> int:
    from lifeboat.engine.verify import verify
    from lifeboat.terminal import ConsoleProgress

    sink = ConsoleProgress()
    try:
        report = verify(_repo(args), args.name, progress=sink, cancel=_cancel_on_signal())
    finally:
        sink.close()
    for line in report.incomplete:
        print(f"INCOMPLETE (unreadable at capture, restored as zeros): {line}")
    if report.ok:
        print(f"Image {args.name!r} is intact{' but incomplete' if report.incomplete else ''}: {report.chunks} chunks, "
              f"{human_size(report.bytes)} checked")
        return EXIT_OK
    for problem in report.problems:
        print(f"DAMAGED: {problem}", file=sys.stderr)
    print(f"Image {args.name!r} is damaged: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_FAILED


def cmd_delete(args) -> int:
    from lifeboat.engine.prune import delete_image

    delete_image(_repo(args), args.name)
    print(f"Image {args.name!r} deleted; `lifeboat prune` reclaims the chunks only it used")
    return EXIT_OK


def cmd_prune(args) -> int:
    from lifeboat.engine.prune import prune

    report = prune(_repo(args), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {report.removed_chunks} unused chunks ({human_size(report.removed_bytes)}); "
          f"{report.kept_chunks} chunks are still used"
          + (f"; removed {report.removed_leftovers} leftovers of interrupted jobs" if report.removed_leftovers else ""))
    return EXIT_OK


def cmd_check(args) -> int:
    from lifeboat.engine.check import check_repository
    from lifeboat.terminal import ConsoleProgress

    sink = ConsoleProgress()
    try:
        report = check_repository(_repo(args), read_data=args.read_data, progress=sink, cancel=_cancel_on_signal())
    finally:
        sink.close()
    if args.json:
        _print_json(report.to_json())
        return EXIT_OK if report.healthy else EXIT_FAILED
    lo = report.leftovers
    print(f"{report.images} images, {report.chunks_referenced} chunks referenced, {report.chunks_stored} stored"
          + (f", {human_size(report.bytes_read)} read and hashed" if args.read_data else ""))
    if lo.any:
        print(f"leftovers of interrupted jobs (prune removes them): {lo.unreferenced_chunks} unreferenced chunks "
              f"({human_size(lo.unreferenced_bytes)}), {lo.tmp_files} partial files in tmp/ "
              f"({human_size(lo.tmp_bytes)}), {lo.stale_locks} stale locks, "
              f"{len(lo.empty_image_dirs)} image directories without a manifest")
    for problem in report.problems:
        print(f"DAMAGED: {problem}", file=sys.stderr)
    if report.healthy:
        print(f"Repository {report.root} is healthy")
        return EXIT_OK
    print(f"Repository {report.root} is damaged: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_FAILED


def _confirm(plan, args) -> bool:
    failing = plan.target_disk.health is not None and plan.target_disk.health.status == "failing"
    if failing and args.yes and not args.allow_failing_target:
        print(f"refusing to restore onto {plan.target}: {plan.target_disk.health.describe()}; "
              "pass --allow-failing-target as well to write to it anyway", file=sys.stderr)
        return False
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to restore without confirmation: no terminal to ask on; pass --yes", file=sys.stderr)
        return False
    name = os.path.basename(plan.target)
    if failing:
        print(f"WARNING: {plan.target} is failing ({plan.target_disk.health.describe()}): "
              "what is restored onto it may not stay readable.")
        if input("Type 'failing' to restore onto it anyway: ").strip() != "failing":
            return False
    answer = input(f"Type the target's name ({name}) to erase it and restore: ").strip()
    return answer in (name, plan.target)


def _print_bars(plan) -> None:
    """Today's disk and the restored one as proportional bars (colours only on a terminal)."""
    from rich.console import Console

    from lifeboat.engine.plan_picture import plan_bars

    console = Console(width=min(80, os.get_terminal_size().columns) if sys.stdout.isatty() else 80, highlight=False)
    for bar in plan_bars(plan):
        console.print(bar)
    console.print()


def _vg_renames(pairs: list[str] | None) -> dict[str, str]:
    renames = {}
    for pair in pairs or ():
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise LifeboatError(f"--rename-vg {pair!r}: expected OLD=NEW (volume group names)")
        renames[old] = new
    return renames


def cmd_restore(args) -> int:
    from lifeboat.engine.plan import plan_restore
    from lifeboat.engine.restore import bootloader_outcome, restore
    from lifeboat.terminal import ConsoleProgress

    if args.partitions:
        from lifeboat.engine.partial import parse_selection, plan_partitions
        from lifeboat.engine.partial_lvm import split_selection

        numbers, volumes = split_selection(args.partitions)  # "2,vg/root": partitions and logical volumes
        chosen = parse_selection(numbers, args.map) if numbers or args.map else {}
        plan = plan_partitions(_repo(args), args.name, args.target, chosen, volumes)
    elif args.map:
        raise LifeboatError("--map needs --partitions (which image partitions to restore)")
    else:
        plan = plan_restore(_repo(args), args.name, args.target, vg_renames=_vg_renames(args.rename_vg),
                            luks_key=_luks_key(args))
    if args.no_bootloader and plan.boot_chain:
        from lifeboat.boot.plan_chain import SKIPPED

        plan = dataclasses.replace(plan, boot_chain=SKIPPED)
    if args.json and args.dry_run:
        _print_json(plan.to_json())
        return EXIT_OK
    _print_bars(plan)
    print("\n".join(plan.describe()))
    if args.dry_run:
        print("\nDry run: nothing was written.")
        return EXIT_OK
    if not _confirm(plan, args):
        print("Not confirmed: nothing was written.", file=sys.stderr)
        return EXIT_REFUSED
    sink = ConsoleProgress()
    try:
        result = restore(plan, progress=sink, cancel=_cancel_on_signal(), bootloader=not args.no_bootloader)
    finally:
        sink.close()
    if args.json:
        _print_json(result.to_json())
    failed = result.failed_steps()
    bootloader = bootloader_outcome(result)
    print(f"Restored {args.name!r} onto {args.target}: {human_size(result.bytes_written)} in {result.seconds:.1f} s"
          + (f"; bootloader {bootloader}" if bootloader else "") + (f"; {len(failed)} step(s) failed" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_tui(args) -> int:
    from lifeboat.tui.app import main as tui_main

    argv = []
    if getattr(args, "repo", None):
        argv += ["--repo", args.repo]
    if getattr(args, "demo", False):
        argv.append("--demo")
    return tui_main(argv)


def cmd_sandbox(args) -> int:
    from lifeboat.sandbox import run_sandbox

    return run_sandbox(args.dir, tui=not args.round_trip)


# ---------------------------------------------------------------- plumbing


def _cancel_on_signal() -> threading.Event:
    """An event set by Ctrl-C so the engine stops between chunks and cleans up."""
    import signal

    event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if event.is_set():
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            event.set()

        signal.signal(signal.SIGINT, handler)
    return event


def _level(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 22:
        raise argparse.ArgumentTypeError("the compression level must be between 1 and 22")
    return value


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Given `argv`, a command of this module's own (capture, restore, ...) gets a
    parser without the commands other modules own: their modules (bootfix's boot detection, the unattended
    job's mounts, ...) took 0.1-0.15 s of a cold start before a capture read its first chunk."""
    parser = argparse.ArgumentParser(prog="lifeboat", description="Capture and restore whole disks.")
    parser.add_argument("--version", action="version", version=f"lifeboat {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every external command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    repo, as_json, luks = repo_option(), json_option(), luks_option()

    p = sub.add_parser("disks", help="list disks", parents=[as_json])
    p.add_argument("--loop", action="store_true", help="include loop devices")
    p.set_defaults(func=cmd_disks)

    p = sub.add_parser("images", help="list images in a repository", parents=[repo, as_json])
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("capture", help="capture a whole disk into an image", parents=[repo, luks])
    p.add_argument("source", metavar="SOURCE_DISK")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--level", type=_level, default=None, help="zstd level 1-22 (default 3)")
    p.add_argument("--rescue", action="store_true",
                   help="a failing disk: read around errors, retry them later, store unreadable bytes as zeros")
    p.add_argument("--rescue-timeout", type=float, default=None, metavar="SECONDS",
                   help="with --rescue: after this many seconds stop retrying and reading around errors; what is "
                        "left untried counts as unreadable (default: no limit)")
    p.add_argument("--rescue-retries", type=int, default=None, metavar="N",
                   help="with --rescue: extra attempts per unreadable sector (default 1)")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="with --luks-passphrase-file: store a container's decrypted contents in an unencrypted repository")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("verify", help="check every chunk of an image", parents=[repo])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("restore", help="restore an image onto a whole disk (erases it)",
                       parents=[repo, as_json, luks])
    p.add_argument("name", metavar="NAME")
    p.add_argument("target", metavar="TARGET_DISK")
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing (as JSON with --json)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    p.add_argument("--no-bootloader", action="store_true", help="skip the bootloader reinstall step")
    p.add_argument("--partitions", metavar="N,N", help="restore only these image partitions (or logical volumes, VG/LV, "
                   "onto the disk's own group); the disk's table is kept")
    p.add_argument("--map", action="append", metavar="N=M", help="put image partition N onto target partition M")
    p.add_argument("--rename-vg", action="append", metavar="OLD=NEW",
                   help="restore the image's LVM volume group OLD as NEW, with new PV and VG UUIDs (as vgimportclone "
                        "makes them), when a group named OLD is on another disk of this machine")
    p.add_argument("--allow-failing-target", action="store_true",
                   help="with --yes: restore even onto a disk whose SMART health is failing")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("delete", help="delete an image (its chunks stay until prune)", parents=[repo])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("prune", help="remove chunks that no image uses", parents=[repo])
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("check", help="check a whole repository: manifests, chunks, leftovers", parents=[repo, as_json])
    p.add_argument("--read-data", action="store_true", help="also decompress and hash every chunk")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("tui", help="the full-screen wizard (the default)", parents=[repo_option(secrets=False)])
    p.add_argument("--demo", action="store_true", help="fake disks and images, nothing is touched")
    p.set_defaults(func=cmd_tui)

    p = sub.add_parser("sandbox", help="the TUI on loop-device demo disks (what `make run` starts)")
    p.add_argument("--dir", default="/var/tmp/lifeboat-sandbox")
    p.add_argument("--round-trip", action="store_true", help="no TUI: capture and restore a demo disk and report")
    p.set_defaults(func=cmd_sandbox)

    command = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if command not in sub.choices:  # --help, no command, or another module's command
        _add_other_commands(sub)
    return parser


def _add_other_commands(sub) -> None:
    """Commands other modules own, each registered by its add_subcommand(); one that fails to import fails here."""
    from lifeboat import unattended
    from lifeboat.boot import command as boot_command
    from lifeboat.foreign import command as foreign_command
    from lifeboat.imagefs import command as imagefs_command
    from lifeboat.repo import command as repo_command

    boot_command.add_subcommand(sub)
    unattended.add_subcommand(sub)
    repo_command.add_subcommand(sub)
    imagefs_command.add_subcommand(sub)
    foreign_command.add_subcommand(sub)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    if getattr(args, "level", None) is None and args.command == "capture":
        args.level = default_level()
    if not args.command:
        args.repo, args.demo = None, False
        args.func = cmd_tui
    try:
        return args.func(args)
    except Cancelled as exc:
        print(f"lifeboat: {exc}", file=sys.stderr)
        return exc.exit_code
    except LifeboatError as exc:
        print(f"lifeboat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lifeboat: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a device or file failed under us: say which, without a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"lifeboat: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
