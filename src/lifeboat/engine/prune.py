"""Delete images and reclaim the chunks no image uses any more."""

from __future__ import annotations

from dataclasses import dataclass

from lifeboat.engine.check import remove_leftovers
from lifeboat.errors import ImageNotFound, RepositoryError
from lifeboat.repo.manifest import list_images, load_manifest
from lifeboat.repo.store import Repository


@dataclass
class PruneReport:
    removed_chunks: int = 0
    removed_bytes: int = 0
    kept_chunks: int = 0
    removed_leftovers: int = 0  # partial files, stale locks, image directories without a manifest


def delete_image(repo: Repository, name: str) -> None:
    if not repo.has_image(name):
        raise ImageNotFound(f"no image named {name!r} in {repo.root}")
    repo.delete_image(name)


def prune(repo: Repository, dry_run: bool = False) -> PruneReport:
    """Remove every chunk that no complete image references, and what killed jobs left in tmp/ and images/.
    Refuses while a capture is running."""
    report = PruneReport()
    with repo.shared_use(exclusive=True):
        keep: set[str] = set()
        for image in list_images(repo):
            if image.summary is None:
                # an unreadable manifest might reference anything: removing chunks could destroy it
                raise RepositoryError(f"image {image.name!r} cannot be read ({image.problem}); "
                                      "fix or delete it before pruning")
            keep.update(load_manifest(repo, image.name).referenced_chunks())
        for path in repo.all_chunks():
            if path.name[:-4] in keep:
                report.kept_chunks += 1
                continue
            report.removed_chunks += 1
            report.removed_bytes += path.stat().st_size
            if not dry_run:
                path.unlink()
        if not dry_run:
            report.removed_leftovers = remove_leftovers(repo)
    return report
