terraform {
  required_providers {
    hypeman = {
      source = "hypeman/hypeman"
    }
  }
}

provider "hypeman" {
  # Every setting is optional; these are the defaults spelled out.
  data_dir           = "/var/lib/hypeman"
  accelerator        = "auto"
  kernel             = "/var/cache/hypeman/kernel/vmlinuz"
  busybox            = "/bin/busybox"
  compress_snapshots = true
  # hypervisor defaults to cloud-hypervisor when it is installed, else qemu.

  # Host networking is off unless this block is present, because it changes the host's network:
  # a bridge, a TAP device per running instance and a NAT rule. Leave the block out and instances
  # have no network interface; `network {}` takes the defaults spelled out here.
  network {
    bridge = "vmbr0"
    subnet = "10.100.0.0/16"
    # gateway defaults to the subnet's first address (10.100.0.1), and uplink to the interface
    # of the host's default route; uplink = "none" keeps guests off the outside world.

    # Name servers for the guests' /etc/resolv.conf; by default the image's own file is kept.
    dns = ["1.1.1.1", "9.9.9.9"]
  }
}
