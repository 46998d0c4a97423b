"""Secure Boot for an installed Linux: does it boot through shim, which signed binaries can be installed, and
is a loader on the ESP really a signed one.

A system boots through shim when its ESP has shimx64.efi next to grubx64.efi (what Debian's, Ubuntu's and
Fedora's installers write on a UEFI machine) or its dpkg status has shim-signed or grub-efi-amd64-signed
installed. For such a system only shim + signed GRUB may be installed: an unsigned GRUB would stop it from
booting with Secure Boot on. The signed binaries come from the installed system's packages first (its own
grub-install --uefi-secure-boot, in a chroot) and from the live system's copies (the Lifeboat ISO carries
shim-signed and grub-efi-amd64-signed) as the fallback.

A loader is "signed" when its PE file carries an Authenticode signature (a WIN_CERTIFICATE of type
PKCS_SIGNED_DATA in the certificate table); where the package's file is at hand it must also be that file,
byte for byte. Checking the signature chain itself is the firmware's job.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from enum import StrEnum

from lifeboat.boot import probe


class Chain(StrEnum):
    """Which boot chain a bootloader step installs, in the words the plan and the steps show."""

    SHIM = "shim + signed GRUB (Secure Boot)"
    UNSIGNED = "GRUB (unsigned: will not boot with Secure Boot on)"


SHIM_PACKAGES = ("shim-signed", "grub-efi-amd64-signed")
SHIM_FILE = "usr/lib/shim/shimx64.efi.signed"
# the same shim under the names other releases give it (trixie's dual-signed one, Ubuntu's .latest)
SHIM_VARIANTS = (SHIM_FILE, "usr/lib/shim/shimx64.efi.dualsigned", "usr/lib/shim/shimx64.efi.signed.latest")
MM_FILE = "usr/lib/shim/mmx64.efi.signed"
GRUB_FILE = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
SHIM, GRUB, MM = "shimx64.efi", "grubx64.efi", "mmx64.efi"
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


# ---- does the installed system boot through shim? ---------------------------------------------------------
def installed_packages(status: str) -> set[str]:
    """Package names dpkg's status file lists as installed ("Status: install ok installed")."""
    found = set()
    for stanza in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            found.add(fields["Package"].strip())
    return found


def shim_evidence(root: str, esp_dir: str | None, efi_id: str) -> str:
    """Why this system boots through shim ("" when nothing says it does)."""
    if esp_dir:
        shim = probe.find_ci(esp_dir, f"EFI/{efi_id}/{SHIM}")
        if shim and probe.find_ci(esp_dir, f"EFI/{efi_id}/{GRUB}"):
            return f"its ESP has \\EFI\\{efi_id}\\{SHIM} next to {GRUB}"
    packages = installed_packages(probe.read_text(os.path.join(root, "var/lib/dpkg/status")))
    have = [p for p in SHIM_PACKAGES if p in packages]
    if have:
        return f"its packages {', '.join(have)} are installed"
    return ""


def esp_chain(names_by_dir: dict[str, set[str]]) -> Chain | None:
    """The chain an ESP's listing shows ({"EFI/debian": {"shimx64.efi", ...}}, names lower case): shim when a
    directory other than EFI/BOOT has shim next to GRUB, unsigned when it has GRUB alone, None without GRUB."""
    chain = None
    for directory, names in names_by_dir.items():
        if directory.lower().rstrip("/") == "efi/boot":
            continue
        if GRUB in names:
            if SHIM in names:
                return Chain.SHIM
            chain = Chain.UNSIGNED
    return chain


# ---- signed files ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedSet:
    """Signed shim, GRUB and MokManager from one place (the installed system's packages or the live system's)."""

    where: str  # "the installed system's packages", "the live system's copies"
    shim: str
    grub: str
    mm: str | None  # MokManager: optional (shim starts without it)
    shims: tuple[str, ...] = ()  # every shim file the packages ship (grub-install may copy any of them)

    def files(self) -> dict[str, str]:
        """{name on the ESP: source path}"""
        out = {SHIM: self.shim, GRUB: self.grub}
        if self.mm:
            out[MM] = self.mm
        return out


def signed_set(base: str, where: str) -> SignedSet | None:
    """The signed binaries under `base` ("/" for the live system), None when shim or signed GRUB is missing."""
    shims = [os.path.join(base, f) for f in SHIM_VARIANTS if os.path.isfile(os.path.join(base, f))]
    grub, mm = (os.path.join(base, f) for f in (GRUB_FILE, MM_FILE))
    if not (shims and os.path.isfile(grub)):
        return None
    return SignedSet(where, shims[0], grub, mm if os.path.isfile(mm) else None, tuple(shims))


def authenticode_signed(path: str) -> bool:
    """Does the PE file at `path` carry an Authenticode signature (PKCS#7 signed data in its certificate table)?"""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    if len(data) < 0x40 or data[:2] != b"MZ":
        return False
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0" or len(data) < pe + 24 + 2:
        return False
    opt = pe + 24
    magic = struct.unpack_from("<H", data, opt)[0]
    dirs = opt + {0x10B: 96, 0x20B: 112}.get(magic, -opt - 1)
    if dirs < opt:
        return False
    cert = dirs + 4 * 8  # data directory 4: the certificate table (a file offset, not an RVA)
    if len(data) < cert + 8:
        return False
    offset, size = struct.unpack_from("<II", data, cert)
    if size < 8 or offset + size > len(data):
        return False
    length, _revision, cert_type = struct.unpack_from("<IHH", data, offset)
    return cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA and 8 < length <= size


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_signed(path: str | None, expected: str | tuple[str, ...] | None = None) -> str:
    """"" when `path` is a signed loader (and the same file as one of `expected`, when given), else why not."""
    if not path or not os.path.isfile(path):
        return "missing"
    if not probe.is_pe_file(path):
        return "not an EFI program"
    if not authenticode_signed(path):
        return "carries no Authenticode signature (an unsigned loader)"
    wanted = [e for e in ((expected,) if isinstance(expected, str) else expected or ()) if os.path.isfile(e)]
    if wanted and sha256(path) not in {sha256(e) for e in wanted}:
        return f"is signed but not the same file as {' or '.join(wanted)}"
    return ""


def check_dir(esp_dir: str, rel_dir: str, expected: SignedSet | None) -> list[str]:
    """Problems with shim and GRUB in `rel_dir` of the ESP (EFI/debian), each "\\EFI\\debian\\grubx64.efi: why"."""
    wanted = {SHIM: (expected.shims or expected.shim) if expected else None, GRUB: expected.grub if expected else None}
    problems = []
    for name, source in wanted.items():
        why = check_signed(probe.find_ci(esp_dir, f"{rel_dir}/{name}"), source)
        if why:
            problems.append(f"\\{rel_dir.replace('/', chr(92))}\\{name} {why}")
    return problems


# ---- room on the ESP ----------------------------------------------------------------------------------
def bytes_needed(esp_dir: str, writes: dict[str, str]) -> int:
    """More bytes the ESP needs for `writes` ({ESP-relative destination: source file}): what the new files take
    beyond the files they replace, plus a cluster's worth each for rounding and directory entries."""
    need = 0
    for dest, src in writes.items():
        old = probe.find_ci(esp_dir, dest)
        need += os.path.getsize(src) - (os.path.getsize(old) if old and os.path.isfile(old) else 0) + 4096
    return need


def free_bytes(esp_dir: str) -> int:
    st = os.statvfs(esp_dir)
    return st.f_bavail * st.f_frsize


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
