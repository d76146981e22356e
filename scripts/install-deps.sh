#!/usr/bin/env bash
# Installs what building, testing and running the provider on a Debian host needs: the Debian packages
# and a current Debian kernel (bzImage + modules) unpacked into a cache directory. Versions are resolved
# at run time. Idempotent: a second run installs nothing new.
#
#   scripts/install-deps.sh            packages + kernel
#   HYPEMAN_KERNEL_DIR=DIR ...         where the kernel goes (default /var/cache/hypeman/kernel)
#   HYPEMAN_VMM_USER=NAME ...          the unprivileged user QEMU runs as (default hypeman-vmm, the
#                                      provider's vmm_user default), created when missing
set -euo pipefail

kernel_dir=${HYPEMAN_KERNEL_DIR:-/var/cache/hypeman/kernel}
vmm_user=${HYPEMAN_VMM_USER:-hypeman-vmm}
# socat relays QEMU's snapshot stream (QEMU's sandbox lets it run no command); setpriv (util-linux)
# starts QEMU as the VMM user.
packages=(qemu-system-x86 erofs-utils e2fsprogs busybox-static lz4 kmod openssh-server xz-utils cpio iproute2 nftables socat util-linux)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The VMM user: a system user with no home and no login, in the kvm group for /dev/kvm.
getent group kvm >/dev/null || $sudo groupadd --system kvm
if ! getent passwd "$vmm_user" >/dev/null; then
  echo "install-deps: creating the VMM user $vmm_user"
  $sudo useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --groups kvm "$vmm_user"
elif ! id -nG "$vmm_user" | tr ' ' '\n' | grep -qx kvm; then
  $sudo usermod -a -G kvm "$vmm_user"
fi

# QEMU opens these as the VMM user. udev makes /dev/net/tun 0666 (opening it grants nothing: only
# the TAP's owner may attach to it) and /dev/kvm root:kvm 0660; a /dev without udev leaves both
# root's alone.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  echo "install-deps: /dev/net/tun 0666, as udev makes it"
  $sudo chmod 0666 /dev/net/tun
fi
if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ] && [ "$(stat -c %a /dev/kvm)" != 666 ]; then
  echo "install-deps: /dev/kvm root:kvm 0660, as udev makes it"
  $sudo chgrp kvm /dev/kvm && $sudo chmod 0660 /dev/kvm
fi

if [ -e "$kernel_dir/vmlinuz" ] && [ -d "$kernel_dir/modules" ]; then
  echo "install-deps: kernel $(basename "$(readlink -f "$kernel_dir/vmlinuz")") in $kernel_dir"
  exit 0
fi

# linux-image-amd64 is a metapackage; its Depends names the versioned image package of the day.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" && { chown _apt "$work" 2>/dev/null || true; }
cd "$work"
[ -n "$(apt-cache policy linux-image-amd64 2>/dev/null | grep Candidate)" ] || $sudo apt-get update -qq
apt-get download -qq linux-image-amd64
meta=$(ls linux-image-amd64_*.deb)
image_pkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ (]*\).*/\1/p' | head -n1)
[ -n "$image_pkg" ] || { echo "install-deps: cannot find the kernel package in $meta's Depends" >&2; exit 1; }
apt-get download -qq "$image_pkg"
mkdir -p unpacked
dpkg-deb -x "$(ls "${image_pkg}"_*.deb)" unpacked
vmlinuz=$(ls unpacked/boot/vmlinuz-* | head -n1)
release=${vmlinuz##*/vmlinuz-}

$sudo mkdir -p "$kernel_dir.new"
$sudo cp "$vmlinuz" "$kernel_dir.new/vmlinuz-$release"
$sudo mkdir -p "$kernel_dir.new/lib/modules"
$sudo cp -a "unpacked/lib/modules/$release" "$kernel_dir.new/lib/modules/$release"
# The package's postinst would run depmod; modules.dep is what the initrd builder reads.
$sudo depmod -b "$kernel_dir.new" "$release"
$sudo ln -sfn "vmlinuz-$release" "$kernel_dir.new/vmlinuz"
$sudo ln -sfn "lib/modules/$release" "$kernel_dir.new/modules"
$sudo rm -rf "$kernel_dir"
$sudo mv "$kernel_dir.new" "$kernel_dir"
echo "install-deps: kernel $release in $kernel_dir"
