#!/bin/busybox sh
# PID 1 of every guest. It mounts the instance's disks, runs the configured program in the merged
# root with exactly the configured argv, environment and working directory, reports on the
# console and powers the guest off when the program ends. Values read from the config disk are
# data: each is read with cat into one variable and passed as one word, never evaluated.
# Words between @ signs are filled in from contract.go when the initrd is built.

/bin/busybox --install -s /bin
export PATH=/bin

root=/mnt/root
config=/mnt/config

# finish syncs and unmounts what it can, then powers off. If poweroff fails PID 1 exits, the
# kernel panics and panic=-1 ends the VM all the same.
finish() {
	kill -s KILL -1 2>/dev/null
	unmount_volumes
	umount -l "$root" 2>/dev/null
	umount /mnt/overlay 2>/dev/null || mount -o remount,ro /mnt/overlay 2>/dev/null
	sync
	poweroff -f
	exit 1
}

fail() {
	printf '%s\n' "@MARKER_ERROR@$*"
	finish
}

# The mount points of the volumes mounted so far, one file each in mount order, holding the exact
# path in this namespace; finish unmounts them.
mounted=/run/volumes

# unmount_volumes unmounts the volumes, the last mounted first, so that each writable one is clean
# when the guest powers off. The program's processes were just killed and may still hold files
# open for a moment; a volume still busy after a second is remounted read-only instead.
unmount_volumes() {
	[ -d "$mounted" ] || return 0
	for m in $(ls -r "$mounted"); do
		at=$(cat "$mounted/$m" && printf x) || continue
		at=${at%x}
		tries=0
		until umount "$at" 2>/dev/null; do
			tries=$((tries + 1))
			if [ "$tries" -gt 10 ]; then
				mount -o remount,ro "$at" 2>/dev/null || echo "[hypeman-init] warning: cannot unmount the volume $m"
				break
			fi
			sleep 0.1
		done
	done
	sync
}

# clock: sets $now to the hundredths of a second since boot, without starting a process.
clock() {
	read -r now _ </proc/uptime
	now=$((${now%.*} * 100 + 1${now#*.} - 100))
}

# disk SERIAL: sets $dev to the virtio disk with that serial, waiting up to 10 s for it to appear.
# The bound is the clock's, not a count of tries: under emulation each try takes long.
disk() {
	clock
	deadline=$((now + 1000))
	while :; do
		for s in /sys/block/vd*/serial; do
			[ -r "$s" ] || continue
			got=
			read -r got <"$s" || :
			[ "$got" = "$1" ] || continue
			dev=${s%/serial}
			dev=/dev/${dev##*/}
			return 0
		done
		clock
		[ "$now" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# nic MAC: sets $nic to the network interface with that MAC address, waiting up to 5 s for it.
nic() {
	tries=0
	while :; do
		for a in /sys/class/net/*/address; do
			[ -r "$a" ] && [ "$(cat "$a")" = "$1" ] || continue
			nic=${a%/address}
			nic=${nic##*/}
			return 0
		done
		tries=$((tries + 1))
		[ "$tries" -le 50 ] || return 1
		sleep 0.1
	done
}

# exact FILE: sets $item to the exact bytes of FILE, trailing newlines included.
exact() {
	item=$(cat "$1" && printf x) || fail "cannot read $1"
	item=${item%x}
}

# item DIR N: sets $item to the exact bytes of DIR/NNNN (N zero-padded to four digits); returns 1
# when there is no such file.
item() {
	n=$2
	while [ "${#n}" -lt 4 ]; do n=0$n; done
	[ -f "$1/$n" ] || return 1
	exact "$1/$n"
}

# resolve PATH: sets $resolved to where the absolute PATH of the merged root is in this
# namespace, following symbolic links as they resolve inside the root (an absolute link target
# is relative to the root, not to the initrd). Missing components are kept as they are.
resolve() {
	todo=$1
	walked=
	links=0
	while [ -n "$todo" ]; do
		case $todo in
		/*)
			todo=${todo#/}
			continue
			;;
		*/*)
			comp=${todo%%/*}
			todo=${todo#*/}
			;;
		*)
			comp=$todo
			todo=
			;;
		esac
		case $comp in
		.) ;;
		..) walked=${walked%/*} ;;
		*)
			if [ -L "$root$walked/$comp" ]; then
				links=$((links + 1))
				[ "$links" -le 40 ] || return 1
				target=$(readlink "$root$walked/$comp" && printf x)
				target=${target%?x}
				case $target in /*) walked= ;; esac
				todo=$target/$todo
			else
				walked=$walked/$comp
			fi
			;;
		esac
	done
	resolved=$root$walked
}

# executable PATH: whether the absolute PATH of the merged root is an executable file there.
executable() {
	resolve "$1" && [ -f "$resolved" ] && [ -x "$resolved" ]
}

# mount_volume SERIAL PATH DIR: mounts the ext4 disk with SERIAL at the absolute PATH of the merged
# root (read-only when DIR has the readonly file) and sets $resolved to where that is; on failure
# sets $why and returns 1.
mount_volume() {
	case $2 in
	/*) ;;
	*)
		why="not an absolute path"
		return 1
		;;
	esac
	disk "$1" || {
		why="no disk with that serial"
		return 1
	}
	resolve "$2" || {
		why="too many levels of symbolic links"
		return 1
	}
	if [ "$resolved" = "$root" ] || [ "$resolved" = "$root/" ]; then
		why="that is the root itself"
		return 1
	fi
	mkdir -p "$resolved" 2>/dev/null
	[ -d "$resolved" ] || {
		why="not a directory"
		return 1
	}
	# The ext2/3/4 superblock magic, 0xEF53 little-endian at byte 1080: anything else is no ext4.
	magic=$(dd if="$dev" bs=2 skip=540 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
	[ "$magic" = 53ef ] || {
		why="the disk $dev holds no ext4 filesystem"
		return 1
	}
	options=rw
	if [ -e "$3/@CONFIG_VOLUME_READONLY@" ]; then
		# noload: a read-only disk cannot have its journal replayed.
		options=ro,noload
	elif [ "$(cat "/sys/block/${dev#/dev/}/ro")" != 0 ]; then
		# busybox mount would quietly fall back to read-only.
		why="the disk $dev is read-only but the volume is writable"
		return 1
	fi
	# busybox says "mount: mounting DEV on DIR failed: REASON"; DIR is this namespace's, not the guest's.
	why=$(mount -t ext4 -o "$options" "$dev" "$resolved" 2>&1) || {
		why=${why##*failed: }
		why="mount failed: ${why:-no reason given} (ext4 on $dev)"
		return 1
	}
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm

while read -r module; do
	insmod "$module" || echo "[hypeman-init] warning: cannot load $module"
done <@MODULES_LIST@

disk @SERIAL_ROOTFS@ || fail "no disk with serial @SERIAL_ROOTFS@"
rootfs_dev=$dev
disk @SERIAL_OVERLAY@ || fail "no disk with serial @SERIAL_OVERLAY@"
overlay_dev=$dev
disk @SERIAL_CONFIG@ || fail "no disk with serial @SERIAL_CONFIG@"
config_dev=$dev

mount -t erofs -o ro "$rootfs_dev" /mnt/rootfs || fail "cannot mount the rootfs disk $rootfs_dev (erofs)"
mount -t ext4 "$overlay_dev" /mnt/overlay || fail "cannot mount the overlay disk $overlay_dev (ext4)"
mount -t erofs -o ro "$config_dev" "$config" || fail "cannot mount the config disk $config_dev (erofs)"
mkdir -p /mnt/overlay/upper /mnt/overlay/work || fail "cannot create the overlay directories"
mount -t overlay -o lowerdir=/mnt/rootfs,upperdir=/mnt/overlay/upper,workdir=/mnt/overlay/work overlay "$root" ||
	fail "cannot mount the merged root (overlayfs)"
mkdir -p "$root/proc" "$root/sys" "$root/dev"
mount -t proc proc "$root/proc" || fail "cannot mount /proc in the root"
mount -t sysfs sysfs "$root/sys" || fail "cannot mount /sys in the root"
mount -o rbind /dev "$root/dev" || fail "cannot mount /dev in the root"

# Volumes, in the config disk's order: each disk is found by its serial and its ext4 filesystem
# mounted at its path inside the root, which is created when missing.
mkdir -p "$mounted" || fail "cannot create $mounted"
i=0
while :; do
	n=$i
	while [ "${#n}" -lt 4 ]; do n=0$n; done
	volume=$config/@CONFIG_VOLUMES_DIR@/$n
	[ -d "$volume" ] || break
	exact "$volume/@CONFIG_VOLUME_SERIAL@"
	serial=$item
	exact "$volume/@CONFIG_VOLUME_PATH@"
	at=$item
	mount_volume "$serial" "$at" "$volume" || fail "cannot mount volume $serial at $at: $why"
	printf '%s' "$resolved" >"$mounted/$n" || fail "cannot record the mount of volume $serial"
	i=$((i + 1))
done

if [ -f "$config/@CONFIG_HOSTNAME@" ]; then
	hostname "$(cat "$config/@CONFIG_HOSTNAME@")" || echo "[hypeman-init] warning: cannot set the hostname"
fi

ip link set dev lo up 2>/dev/null || echo "[hypeman-init] warning: cannot bring loopback up"
if [ -f "$config/@CONFIG_NET_ADDRESS@" ]; then
	address=$(cat "$config/@CONFIG_NET_ADDRESS@")
	mac=$(cat "$config/@CONFIG_NET_MAC@") || fail "the config disk has a network address but no MAC"
	nic "$mac" || fail "no network interface with MAC $mac"
	if [ "$nic" != eth0 ]; then
		ip link set dev "$nic" name eth0 || fail "cannot rename the network interface $nic to eth0"
	fi
	ip address add "$address" dev eth0 || fail "cannot give eth0 the address $address"
	ip link set dev eth0 up || fail "cannot bring eth0 up"
	if [ -s "$config/@CONFIG_NET_GATEWAY@" ]; then
		gateway=$(cat "$config/@CONFIG_NET_GATEWAY@")
		ip route add default via "$gateway" dev eth0 || fail "cannot add the default route via $gateway"
	fi
	if [ -s "$config/@CONFIG_NET_DNS@" ]; then
		# The file is written in the root's real /etc; a link in its place, which could lead out
		# of the root, is replaced.
		resolve /etc || fail "/etc: too many levels of symbolic links"
		{ mkdir -p "$resolved" && rm -f "$resolved/resolv.conf" &&
			sed 's/^/nameserver /' "$config/@CONFIG_NET_DNS@" >"$resolved/resolv.conf"; } ||
			fail "cannot write /etc/resolv.conf"
	fi
fi

# The positional parameters become the program's command: environment entries first (for env -i).
set --
search_path=@DEFAULT_PATH@
i=0
while item "$config/@CONFIG_ENV_DIR@" "$i"; do
	case $item in
	=*) fail "environment entry $i has an empty name" ;;
	*=*) ;;
	*) fail "environment entry $i is not NAME=VALUE" ;;
	esac
	case $item in PATH=*) search_path=${item#PATH=} ;; esac
	set -- "$@" "$item"
	i=$((i + 1))
done

workdir=/
if [ -f "$config/@CONFIG_WORKDIR@" ]; then
	exact "$config/@CONFIG_WORKDIR@"
	[ -z "$item" ] || workdir=$item
fi
case $workdir in
/*) ;;
*) fail "workdir is not an absolute path: $workdir" ;;
esac
resolve "$workdir" || fail "workdir $workdir: too many levels of symbolic links"
mkdir -p "$resolved" 2>/dev/null
[ -d "$resolved" ] || fail "workdir $workdir is not a directory"
cwd=$resolved

item "$config/@CONFIG_ARGV_DIR@" 0 || fail "no program: the config disk has no @CONFIG_ARGV_DIR@/0000"
program=$item
# The executable as the program's own exec will find it: relative paths are relative to the
# workdir, which is the current directory then.
exe=
case $program in
/*)
	executable "$program" && exe=$program
	;;
*/*)
	executable "$workdir/$program" && exe=$program
	;;
*)
	rest=$search_path:
	while [ -n "$rest" ] && [ -n "$program" ]; do
		dir=${rest%%:*}
		rest=${rest#*:}
		[ -n "$dir" ] || dir=.
		case $dir in
		/*) candidate=$dir/$program ;;
		*) candidate=$workdir/$dir/$program ;;
		esac
		if executable "$candidate"; then
			exe=$dir/$program
			break
		fi
	done
	;;
esac
[ -n "$exe" ] || fail "entrypoint not found: $program"

set -- "$@" /bin/busybox nsenter "-r$root" "-w$cwd" -- "$exe"
i=1
while item "$config/@CONFIG_ARGV_DIR@" "$i"; do
	set -- "$@" "$item"
	i=$((i + 1))
done

# vCPUs the VMM adds while the guest runs come online through the device events the kernel sends
# (uevent runs the handler for each). Those it booted with the kernel brought online itself, and
# the manager adds none before the program has started, which comes after this.
uevent @HOTPLUG_HANDLER@ </dev/null >/dev/null 2>&1 &

# The power button (ACPI, through evdev) asks the program to stop; see /etc/acpi.
if [ -d /dev/input ]; then
	acpid -c /etc/acpi -l /dev/null -p /run/acpid.pid || echo "[hypeman-init] warning: no power button handler"
fi

echo "@MARKER_STARTED@"
# A child shell records its pid for the power button handler, then becomes the program by exec;
# it runs in the foreground so that it keeps the default signal dispositions.
sh -c 'echo $$ >/run/program.pid && exec /bin/busybox env -i -- "$@"' program "$@" </dev/null
code=$?
echo "@MARKER_EXITED@$code"
finish
