"""Drive Lifeboat's TUI in a real terminal: a private tmux session, keys in, screen text out."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

SIZE = (80, 24)


class TmuxTerminal:
    """One detached tmux session running one command; `close()` kills only this session."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None, size=SIZE) -> None:
        self.name = f"lifeboat-tui-test-{os.getpid()}-{time.monotonic_ns()}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        shell_line = f"env {exports} {shlex.join(command)}; echo LIFEBOAT-EXITED=$?; sleep 600"
        # a private tmux server (its own socket): another job's tmux on this machine cannot take ours down
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), shell_line],
            check=True,
        )

    def screen(self) -> str:
        out = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return out.stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "-l", text], check=True)
        time.sleep(0.15)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear within {timeout:.0f} s; the screen shows:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]
