"""Volumes inside partitions that Lifeboat images by their contents (LVM today)."""
