"""Lifeboat: capture and restore whole disks, and make them boot again."""

__version__ = "0.1.0"
