#!/usr/bin/env bash
# Builds the "Secure Boot Debian" rootfs tarball: Debian booting through Debian's signed chain
# (shim-signed, grub-efi-amd64-signed, the signed linux-image-amd64), the way the Debian installer sets up
# a UEFI machine; it boots to a serial login prompt. The ESP and the disk are made by tests/vm/sbdisk.py.
# Usage: debian-sb-rootfs.sh OUT.tar   (Debian packages are cached in /var/cache/lifeboat/debs)
set -euo pipefail
out=$1
suite=${LIFEBOAT_DEBIAN_SUITE:-bookworm}
mirror=${LIFEBOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/cache/lifeboat
mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/sbrootfs.XXXXXX")
root=$work/root
cleanup() {
  for m in proc sys dev; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
# grub-efi-amd64-bin (not grub-efi-amd64): its postinst would run grub-install against this host.
pkgs=linux-image-amd64,initramfs-tools,shim-signed,grub-efi-amd64-signed,grub-efi-amd64-bin,grub2-common
pkgs+=,efibootmgr,mokutil,e2fsprogs,systemd-sysv,udev,kmod,util-linux,mount
for attempt in 1 2 3; do
  if debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" "$suite" "$root" "$mirror"; then
    break
  fi
  tail -30 "$root/debootstrap/debootstrap.log" >&2 || true
  [[ $attempt == 3 ]] && { echo "debootstrap failed 3 times" >&2; exit 1; }
  rm -rf "$root"; sleep 10
done
echo lifeboat-fixture >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 lifeboat-fixture\n' >"$root/etc/hosts"
chroot "$root" passwd -d root >/dev/null
cat >"$root/etc/default/grub" <<'G'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
G
rm -rf "$root"/usr/share/{doc,man,info,locale}/* "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
       "$root"/var/cache/apt/archives/*.deb
kdir=$(echo "$root"/lib/modules/*/kernel)
rm -rf "$kdir"/drivers/{gpu,media,net/wireless,net/ethernet,infiniband,staging,bluetooth,iio,isdn,hwmon,input/touchscreen} \
       "$kdir"/sound "$kdir"/net/{wireless,mac80211,bluetooth}
mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"; mount --bind /dev "$root/dev"
kver=$(basename "$(dirname "$kdir")")
chroot "$root" depmod "$kver"
chroot "$root" update-initramfs -u -k "$kver" >/dev/null
umount "$root/proc" "$root/sys" "$root/dev"
for f in usr/lib/shim/shimx64.efi.signed usr/lib/shim/mmx64.efi.signed usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed; do
  [[ -s $root/$f ]] || { echo "missing $f" >&2; exit 1; }
done
tar -C "$root" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "built $out ($(du -sh "$root" | cut -f1) unpacked)"
