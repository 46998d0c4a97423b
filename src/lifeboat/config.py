"""Settings: command line first, then environment, then the config file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

CONFIG_ENV = "LIFEBOAT_CONFIG"
REPO_ENV = "LIFEBOAT_REPO"
CONFIG_PATHS = (Path("/etc/lifeboat/lifeboat.toml"), Path.home() / ".config/lifeboat/lifeboat.toml")


def load_config() -> dict:
    paths = [Path(os.environ[CONFIG_ENV])] if os.environ.get(CONFIG_ENV) else list(CONFIG_PATHS)
    for path in paths:
        if path.is_file():
            with open(path, "rb") as f:
                return tomllib.load(f)
    return {}


def default_repo(cli_value: str | None = None) -> str | None:
    """The repository path to use: --repo, else $LIFEBOAT_REPO, else `repo` in the config file."""
    if cli_value:
        return cli_value
    if os.environ.get(REPO_ENV):
        return os.environ[REPO_ENV]
    value = load_config().get("repo")
    return str(value) if value else None


def default_level() -> int:
    return int(load_config().get("compression_level", 3))
