"""Restore of LUKS containers, once the partitions exist on the target: each container's header backup is
written onto its partition (luksHeaderRestore: same UUID, cipher and key slots), the container is opened
with the passphrase, its contents are written through the opened node and, on a larger partition, their
filesystem grown; swap is made again. The container is closed afterwards, on error too. Containers
holding an LVM physical volume are opened for the while lvm_restore recreates their group inside
(`opened_volumes`), then closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from lifeboat.engine.luks_plan import ContainerAction, opened_containers
from lifeboat.events import Outcome
from lifeboat.fs.grow import grow_filesystem, make_swap
from lifeboat.fs.registry import CaptureMode
from lifeboat.layout.write import partition_node
from lifeboat.repo.manifest import Content, ImageManifest
from lifeboat.repo.store import Repository
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey

WriteContents = Callable[[str, ContainerAction, Content], None]  # (opened node, action, contents) -> written


def restore_containers(actions: tuple[ContainerAction, ...], manifest: ImageManifest, repo: Repository, target: str,
                       key: LuksKey, write: WriteContents, step, done) -> None:
    """The containers holding a filesystem (or swap): re-created, filled, grown, closed."""
    containers = opened_containers(manifest)
    for action in actions:
        if action.volume_group:
            continue
        content = containers[action.partition]
        node = _recreate(action, containers, repo, target, step, done)
        what = f"on partition {action.target_partition} ({node})"
        with luks.opened(node, key, what, read_only=False) as opened:
            _contents(action, content.inner, opened, write, step, done)
        done(f"{action.title} closed", Outcome.DONE, node)


@contextlib.contextmanager
def opened_volumes(actions: tuple[ContainerAction, ...], manifest: ImageManifest, repo: Repository, target: str,
                   key: LuksKey | None, step, done) -> Iterator[dict[int, str]]:
    """The containers holding an LVM physical volume re-created and open for the block; yields target
    partition number -> opened node (where lvm_restore makes the PV). Closed afterwards, on error too."""
    containers = opened_containers(manifest)
    nodes: dict[int, str] = {}
    with contextlib.ExitStack() as stack:
        for action in actions:
            if action.volume_group and key is not None:
                node = _recreate(action, containers, repo, target, step, done)
                stack.callback(done, f"{action.title} closed", Outcome.DONE, node)
                nodes[action.target_partition] = stack.enter_context(luks.opened(
                    node, key, f"on partition {action.target_partition} ({node})", read_only=False))
        yield nodes


def _recreate(action: ContainerAction, containers: dict, repo: Repository, target: str, step, done) -> str:
    """The container's header backup written onto its partition; returns the partition's node."""
    content = containers[action.partition]
    node = partition_node(target, action.target_partition)
    step(action.title, "header restored from the image: same UUID, cipher and key slots")
    with luks.header_file(repo.get_chunk(content.header.digest, content.header.length)) as path:
        luks.header_restore(node, path)
    done(action.title, Outcome.DONE, f"{action.describe()} on {node}")
    return node


def _contents(action: ContainerAction, inner: Content, opened: str, write: WriteContents, step, done) -> None:
    if action.mode in (CaptureMode.USED_BLOCKS, CaptureMode.RAW):
        write(opened, action, inner)
    if action.mode is CaptureMode.SWAP:
        uuid, label = getattr(inner, "uuid", ""), getattr(inner, "label", "")
        step(f"swap in the {action.title}")
        make_swap(opened, uuid, label)
        done(f"swap in the {action.title}", Outcome.DONE, f"UUID {uuid}")
    elif action.grow:
        name = f"grow the contents of the {action.title} ({action.fstype})"
        step(name, action.grow)
        done(name, Outcome.DONE, grow_filesystem(action.grow, action.fstype, opened)
             + f" to {action.new_size} bytes")
