"""The "Network location…" form: kind, server, share/path, user and password (or key file), a connection
test that lists the images found, and Use. Secrets stay in this screen's widgets and the backend's open
connection: never in the URL, the log or the recent list."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from lifeboat.errors import LifeboatError
from lifeboat.repo import netwait
from lifeboat.tui.backend import Login, Probe, ProbeState
from lifeboat.tui.dialogs.passphrase import PassphraseDialog
from lifeboat.tui.net_location import FormFields, NetKind, RecentLocations, build_url, fields_of
from lifeboat.tui.screens.pick import WizardStep

log = logging.getLogger("lifeboat.tui")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]+")


class ProbeDone(Message):
    def __init__(self, url: str, use: bool, probe: Probe | None = None, error: str = "") -> None:
        super().__init__()
        self.url, self.use, self.probe, self.error = url, use, probe, error


class NetworkLocationScreen(WizardStep):
    BINDINGS = [
        Binding("ctrl+t", "test", "Test connection", priority=True),
        Binding("ctrl+s", "use", "Use", priority=True),  # Enter in a field too
        Binding("ctrl+y", "trust", "Trust host key", show=False, priority=True),
    ]

    def __init__(self, on_chosen: Callable[[str], None], recent: RecentLocations, url: str = "") -> None:
        super().__init__("Network location", "Where the repository is. Passwords are kept only while Lifeboat runs.")
        self.on_chosen = on_chosen
        self.recent = recent
        self.start = fields_of(url) if url else FormFields(NetKind.SMB)
        self.fingerprint = ""  # an unknown SSH host key the server showed
        self.trusted = ""  # ... and the one the user accepted

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        f = self.start
        with VerticalScroll(id="net-form"):
            yield Select([(k.label, k) for k in NetKind], value=f.kind, allow_blank=False, id="kind")
            yield self._row("Server", Input(f.server, id="server", placeholder="nas.local or 192.168.1.10"))
            yield self._row("Port", Input(f.port, id="port", placeholder="default"))
            yield self._row("Path", Input(f.path, id="path", placeholder="/backups"))
            yield self._row("User", Input(f.user, id="user"))
            yield self._row("Password", Input(id="password", password=True))
            yield self._row("Key file", Input(id="key-file", placeholder="ssh: ~/.ssh/id_ed25519 (optional)"))
            yield Checkbox("Encrypt a new repository made here", id="encrypt")
            with Horizontal(id="net-buttons"):
                yield Button("Test connection", id="test")
                yield Button("Use", id="use", variant="primary")
            yield Static("", id="net-url", classes="step-intro", markup=False)
            yield Static("", id="net-result", classes="result-body", markup=False)
        yield Footer()

    @staticmethod
    def _row(label: str, field: Input) -> Horizontal:
        return Horizontal(Label(label, classes="net-label", id=f"label-{field.id}"), field, classes="net-row")

    def on_mount(self) -> None:
        super().on_mount()
        self._relabel(self.start.kind)
        self.query_one("#server" if self.start.kind is not NetKind.DIRECTORY else "#path", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._relabel(NetKind(event.value))

    def _relabel(self, kind: NetKind) -> None:
        self.query_one("#label-server", Label).update(kind.server_label)
        self.query_one("#label-path", Label).update(kind.path_label)
        self.query_one("#label-user", Label).update("Access key" if kind is NetKind.S3 else "User")
        self.query_one("#label-password", Label).update("Secret key" if kind is NetKind.S3 else "Password")
        for name in ("server", "port"):
            self.query_one(f"#{name}", Input).disabled = kind is NetKind.DIRECTORY
        for name in ("user", "password"):
            self.query_one(f"#{name}", Input).disabled = not kind.takes_user
        self.query_one("#key-file", Input).disabled = kind is not NetKind.SSH

    # ---- the form's values

    def fields(self) -> FormFields:
        value = lambda name: self.query_one(f"#{name}", Input).value  # noqa: E731
        return FormFields(NetKind(self.query_one("#kind", Select).value), value("server"), value("path"),
                          value("port"), value("user"))

    def login(self) -> Login:
        value = lambda name: self.query_one(f"#{name}", Input).value  # noqa: E731
        return Login(value("user").strip(), value("password"), value("key-file").strip())

    def url(self) -> str | None:
        try:
            url = build_url(self.fields())
        except LifeboatError as error:
            self._say(str(error))
            return None
        self.query_one("#net-url", Static).update(url)
        return url

    # ---- test and use

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_test() if event.button.id == "test" else self.action_use()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_use()

    def action_test(self) -> None:
        self._go(use=False)

    def action_use(self) -> None:
        self._go(use=True)

    def action_trust(self) -> None:
        if self.fingerprint:
            self.trusted = self.fingerprint
            self._go(use=False)

    def _go(self, use: bool) -> None:
        url = self.url()
        if url is None:
            return
        self._say(f"Connecting to {url}…")
        self.probe(url, self.login(), use, self.trusted)

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe")
    def probe(self, url: str, login: Login, use: bool, trusted: str) -> None:
        try:  # a share's server not reachable yet (DHCP): the wait's status lines show in the form
            with netwait.reporting(lambda text: self.app.call_from_thread(self._say, f"{text}…")):
                result = self.app.backend.probe_location(url, login, trusted)
        except LifeboatError as error:
            self.post_message(ProbeDone(url, use, error=str(error)))
        else:
            self.post_message(ProbeDone(url, use, result))

    def on_probe_done(self, message: ProbeDone) -> None:
        message.stop()
        if message.probe is None:
            log.info("connection to %s failed: %s", message.url, message.error)
            found = _FINGERPRINT.search(message.error)
            self.fingerprint = found.group(0) if found and "host key" in message.error else ""
            hint = f"\nCtrl+Y = trust the host key {self.fingerprint} and connect again." if self.fingerprint else ""
            self._say(f"Could not connect: {message.error}{hint}")
            return
        self._say(_describe(message.probe))
        if message.use:
            self._use(message.url, message.probe)

    def _use(self, url: str, probe: Probe) -> None:
        encrypt = self.query_one("#encrypt", Checkbox).value
        if probe.state is ProbeState.READY or (probe.state is ProbeState.EMPTY and not encrypt):
            self._chosen(url)
            return
        create = probe.state is ProbeState.EMPTY
        self.app.push_screen(PassphraseDialog(url, create=create), lambda ok: ok and self._chosen(url))

    def _chosen(self, url: str) -> None:
        self.recent.add(url)
        self.on_chosen(url)

    def _say(self, text: str) -> None:
        self.query_one("#net-result", Static).update(text)


def _describe(probe: Probe) -> str:
    detail = f" ({probe.detail})" if probe.detail else ""
    if probe.state is ProbeState.LOCKED:
        return f"Connected{detail}: an encrypted repository. Use asks for its passphrase."
    if probe.state is ProbeState.EMPTY:
        return f"Connected{detail}: no repository here yet. A capture makes one (encrypted if ticked)."
    names = ", ".join(i.name for i in probe.images[:8]) + (" …" if len(probe.images) > 8 else "")
    count = len(probe.images)
    return f"Connected{detail}: {count} image{'s' if count != 1 else ''}" + (f": {names}" if names else ".")
