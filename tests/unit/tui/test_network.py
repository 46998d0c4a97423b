"""Network locations, encrypted repositories and the rescue retry, against the FakeBackend (the real
servers are tested in tests/integration for lifeboat.repo; the TUI's part is the form and its flows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from lifeboat.errors import LifeboatError
from lifeboat.tui.dialogs.network_location import NetworkLocationScreen
from lifeboat.tui.dialogs.passphrase import LOST_WARNING, PassphraseDialog
from lifeboat.tui.dialogs.repo_picker import RepoPickerScreen
from lifeboat.tui.fake_backend import DEMO_NAS, DEMO_PASSPHRASE, DEMO_PASSWORD, DEMO_VAULT
from lifeboat.tui.net_location import (FormFields, NetKind, RecentLocations, build_url, fields_of,
                                       read_named_locations)
from lifeboat.tui.screens.home import HomeScreen
from lifeboat.tui.screens.pick import TextStepScreen
from lifeboat.tui.screens.progress import ProgressScreen
from lifeboat.tui.screens.result import RESCUE_OFFER, ResultScreen
from tui_pilot import SIZE, drive, screen_text, started, to_compression_step, wait_for_screen, wait_until


# ---- the URL the form builds


@pytest.mark.parametrize("fields, url", [
    (FormFields(NetKind.SMB, "nas.local", "backups/lifeboat", "", "tech"), "smb://tech@nas.local/backups/lifeboat"),
    (FormFields(NetKind.SSH, "vault", "/srv/images", "2222", "root"), "ssh://root@vault:2222/srv/images"),
    (FormFields(NetKind.NFS, "10.0.0.5", "/export/img", "", "ignored"), "nfs://10.0.0.5/export/img"),
    (FormFields(NetKind.S3, "my-bucket", "lifeboat", "9000", "AKIA"), "s3://my-bucket/lifeboat"),
    (FormFields(NetKind.HTTPS, "images.example", "", "", ""), "https://images.example/"),
    (FormFields(NetKind.DIRECTORY, "", "/mnt/usb/repo"), "file:///mnt/usb/repo"),
    (FormFields(NetKind.SMB, "nas", "my share/x", "", "a b"), "smb://a%20b@nas/my%20share/x"),
])
def test_form_fields_build_urls_location_parses(fields, url):
    assert build_url(fields) == url
    back = fields_of(url)
    assert (back.kind, back.server) == (fields.kind, fields.server)


def test_form_refuses_what_location_refuses():
    with pytest.raises(LifeboatError, match="names no share"):
        build_url(FormFields(NetKind.SMB, "nas", ""))
    with pytest.raises(LifeboatError, match="names no server"):
        build_url(FormFields(NetKind.SSH, "", "/x"))


def test_recent_locations_keep_urls_only_and_survive_no_writable_place(tmp_path):
    recent = RecentLocations(tmp_path / "cfg" / "recent-locations.json")
    recent.add("smb://tech@nas/a")
    recent.add("s3://b/p")
    recent.add("smb://tech@nas/a")
    assert RecentLocations(tmp_path / "cfg" / "recent-locations.json").urls == ["smb://tech@nas/a", "s3://b/p"]
    with pytest.raises(LifeboatError, match="password"):
        recent.add("smb://tech:pw@nas/a")
    blocked = tmp_path / "file"
    blocked.write_text("")
    memory = RecentLocations(blocked / "recent.json")  # a file where the directory should be
    memory.add("nfs://srv/x")
    assert memory.urls == ["nfs://srv/x"]


def test_named_locations_from_toml_ignore_secrets_and_bad_urls(tmp_path, caplog):
    toml = tmp_path / "lifeboat-repos.toml"
    toml.write_text('[office-nas]\nurl = "smb://tech@nas/backups"\ndescription = "the NAS"\npassword = "hunter2"\n'
                    '[broken]\nurl = "ftp://x/y"\n[vault]\nurl = "ssh://vault/srv"\n')
    named = read_named_locations(toml)
    assert [(n.name, n.url, n.description) for n in named] == [
        ("office-nas", "smb://tech@nas/backups", "the NAS"), ("vault", "ssh://vault/srv", "")]
    assert "hunter2" not in caplog.text and "ignored" in caplog.text
    assert read_named_locations(tmp_path / "none.toml") == []


# ---- the form in the app


async def open_form(pilot, key: str = "n") -> NetworkLocationScreen:
    await started(pilot)
    await pilot.press("o")  # the home screen's "Repo" action
    picker = await wait_for_screen(pilot, RepoPickerScreen)
    await wait_until(pilot, lambda: picker.named, what="named locations")
    await pilot.press(key)
    return await wait_for_screen(pilot, NetworkLocationScreen)


def fill(form: NetworkLocationScreen, kind: NetKind, **values: str) -> None:
    form.query_one("#kind", Select).value = kind
    for name, value in values.items():
        form.query_one(f"#{name.replace('_', '-')}", Input).value = value


def everything_logged(app) -> str:
    lines, _ = app.log_book.since(0)
    log_file = Path(app.backend.log_path)
    return "\n".join(lines) + (log_file.read_text() if log_file.exists() else "")


@drive
async def test_network_form_tests_then_uses_a_share_without_leaking_the_password(make_app, backend, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        assert form.query_one("#password", Input).password  # masked
        fill(form, NetKind.SMB, server="nas.local", path="backups/lifeboat", user="tech", password="wrong")
        await pilot.press("ctrl+t")
        result = form.query_one("#net-result", Static)
        await wait_until(pilot, lambda: "Could not connect" in str(result.render()), what="refusal")
        assert app.screen is form
        form.query_one("#password", Input).value = DEMO_PASSWORD
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: "1 image: office-pc" in str(result.render()), what="images listed")
        assert "SMB 3.1.1" in str(result.render())
        await pilot.press("ctrl+s")
        await wait_for_screen(pilot, HomeScreen)
        assert app.repo_path == DEMO_NAS
        assert backend.logins[-1] == (DEMO_NAS, backend.logins[-1][1])
        assert backend.logins[-1][1].password == DEMO_PASSWORD and backend.logins[-1][1].user == "tech"
        assert DEMO_PASSWORD not in DEMO_NAS
        saved = (tmp_path / "config" / "recent-locations.json").read_text()
        assert json.loads(saved) == {"recent": [DEMO_NAS]}
        assert DEMO_PASSWORD not in saved and "wrong" not in saved
        logged = everything_logged(app)
        assert DEMO_NAS in logged and DEMO_PASSWORD not in logged


@drive
async def test_named_location_is_one_key_away_and_a_wrong_passphrase_asks_again(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, "2")  # [vault] of lifeboat-repos.toml
        assert form.fields() == fields_of(DEMO_VAULT)
        await pilot.press("ctrl+s")
        dialog = await wait_for_screen(pilot, PassphraseDialog)
        phrase = dialog.query_one("#phrase", Input)
        assert phrase.password
        phrase.value = "not it"
        await pilot.press("enter")
        problem = dialog.query_one("#phrase-problem", Static)
        await wait_until(pilot, lambda: "wrong passphrase" in str(problem.render()), what="wrong passphrase said")
        assert app.screen is dialog and phrase.value == ""
        phrase.value = DEMO_PASSPHRASE
        await pilot.press("enter")
        home = await wait_for_screen(pilot, HomeScreen)
        assert app.repo_path == DEMO_VAULT
        await wait_until(pilot, lambda: [i.name for i in app.images] == ["laptop-2026-11-01"], what="images")
        assert backend.calls.count(("unlock", DEMO_VAULT)) == 2
        logged = everything_logged(app)
        assert DEMO_PASSPHRASE not in logged and "not it" not in logged
        assert DEMO_PASSPHRASE not in screen_text(home)


@drive
async def test_a_locked_repository_in_use_asks_its_passphrase_at_start(make_app, backend):
    app = make_app(repo_path=DEMO_VAULT)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await wait_for_screen(pilot, PassphraseDialog)
        dialog.query_one("#phrase", Input).value = DEMO_PASSPHRASE
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.images) == 1, what="images after unlocking")


@drive
async def test_new_encrypted_repository_says_a_lost_passphrase_is_lost(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        fill(form, NetKind.SSH, server="backup.example", path="/srv/new", user="root", password="pw")
        await pilot.click("#encrypt")
        await pilot.press("ctrl+s")
        dialog = await wait_for_screen(pilot, PassphraseDialog)
        assert LOST_WARNING in screen_text(dialog) and "cannot be recovered" in LOST_WARNING
        dialog.query_one("#phrase", Input).value = "one"
        dialog.query_one("#again", Input).value = "two"
        dialog.query_one("#again", Input).focus()
        await pilot.press("enter")
        assert "differ" in screen_text(dialog) and ("create_encrypted", "ssh://root@backup.example/srv/new") \
            not in backend.calls
        dialog.query_one("#phrase", Input).value = "long enough phrase"
        dialog.query_one("#again", Input).value = "long enough phrase"
        dialog.query_one("#again", Input).focus()
        await pilot.press("enter")
        await wait_for_screen(pilot, HomeScreen)
        assert ("create_encrypted", "ssh://root@backup.example/srv/new") in backend.calls
        assert app.repo_path == "ssh://root@backup.example/srv/new"
        assert "long enough phrase" not in everything_logged(app)


# ---- a capture stopped by a read error offers rescue


@drive
async def test_read_error_offers_capture_again_with_rescue(make_app, backend):
    backend.fail_at = 0.3  # FakeBackend's failure is a read error naming the offset
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_compression_step(pilot)  # sda into /media/usb-backup
        await pilot.press("enter")  # level 3
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ErrorDialog", what="error dialog")
        await pilot.press("enter")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Failed" and RESCUE_OFFER in screen_text(result)
        backend.fail_at = None
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, TextStepScreen), what="the rescue time limit")
        await pilot.press("1", "5", "enter")  # minutes
        await wait_until(pilot, lambda: isinstance(app.screen, (ProgressScreen, ResultScreen)) and app.screen is not result,
                         what="the rescue capture")
        again = await wait_for_screen(pilot, ResultScreen)
        assert again.verdict == "Done" and not again.offers_rescue
        captures = [c for c in backend.calls if c[0] == "capture"]
        assert [c[-1] for c in captures] == [False, True]  # rescue on the second time
        assert captures[0][:-1] == captures[1][:-1]  # the same source, name, repository and level
        assert backend.rescue_timeouts == [None, 15 * 60]


@drive
async def test_a_share_with_no_route_yet_says_no_network_not_the_kernels_errno(make_app, backend):
    backend.offline.add("10.0.2.99")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        fill(form, NetKind.SMB, server="10.0.2.99", path="backups")
        await pilot.press("ctrl+t")
        result = form.query_one("#net-result", Static)
        await wait_until(pilot, lambda: "Could not connect" in str(result.render()), what="no network")
        assert str(result.render()) == ("Could not connect: no network yet: no route to 10.0.2.99 "
                                        "(is the cable plugged in / DHCP done?)")
        assert app.screen is form
