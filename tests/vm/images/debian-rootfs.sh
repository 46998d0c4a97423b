#!/usr/bin/env bash
# Builds a small Debian system (kernel, GRUB for BIOS and UEFI, efibootmgr, python3) as a rootfs tarball.
# It is the "real system" fixture (boots to a serial login prompt) and, booted with its own kernel and
# initrd and init=/usr/local/sbin/lifeboat-job, the rescue guest in which bootfix runs (FAT mounts).
# Usage: debian-rootfs.sh OUT.tar   (Debian packages are cached in /var/cache/lifeboat/debs)
set -euo pipefail
out=$1
suite=${LIFEBOAT_DEBIAN_SUITE:-bookworm}
mirror=${LIFEBOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/cache/lifeboat
mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/rootfs.XXXXXX")
root=$work/root
cleanup() {
  for m in proc sys dev; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
pkgs=linux-image-amd64,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,grub2-common,efibootmgr,python3
pkgs+=,dosfstools,e2fsprogs,fdisk,gdisk,systemd-sysv,udev,kmod,util-linux,mount,mtools
# what lifeboat's own modules import, so its bootfix can run in the rescue guest
pkgs+=,python3-parted,python3-pyudev,python3-zstandard,python3-cffi-backend
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
# The rescue-guest job runner: init=/usr/local/sbin/lifeboat-job runs /job/run from the disk labelled
# LBJOB, prints its exit status as a marker and powers off.
install -d "$root/usr/local/sbin" "$root/job"
cat >"$root/usr/local/sbin/lifeboat-job" <<'J'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /run /tmp; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
[ -d /sys/firmware/efi ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
mount -o remount,rw / 2>/dev/null
/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1 && udevadm trigger && udevadm settle --timeout=30
echo "LIFEBOAT-JOB-START"
mount -o rw LABEL=LBJOB /job && sh /job/run </dev/ttyS0 >/dev/ttyS0 2>&1
echo "LIFEBOAT-JOB-EXIT=$?"
sync; umount /job 2>/dev/null
echo o >/proc/sysrq-trigger; sleep 10; poweroff -f
J
chmod 755 "$root/usr/local/sbin/lifeboat-job"
# Slim it: no docs, no drivers for hardware a QEMU guest does not have.
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
tar -C "$root" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "built $out ($(du -sh "$root" | cut -f1) unpacked)"
