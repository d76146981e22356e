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
  snapshot_mode      = "compressed" # or "lazy": restore without reading the memory first
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

# Another machine, reached over SSH: one provider alias per host, and `provider = hypeman.edge`
# in the resources that run there. data_dir, kernel, kernel_modules and busybox are paths on
# that host; image paths (oci:, docker-archive:) and the files of the ssh block are read here.
provider "hypeman" {
  alias = "edge"
  host  = "ssh://root@10.0.0.5:22"

  ssh {
    private_key_file = "~/.ssh/hypeman_ed25519"
    # The host's key must be in ~/.ssh/known_hosts (the default known_hosts_file). After checking
    # its fingerprint on the host, trust it with `ssh-keyscan 10.0.0.5 >> ~/.ssh/known_hosts`,
    # or pin it here with host_key. The keys of ssh-agent and ~/.ssh/config are used too.
  }
}
