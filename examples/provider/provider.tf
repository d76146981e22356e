terraform {
  required_providers {
    hypeman = {
      source = "hypeman/hypeman"
    }
  }
}

# Every setting is optional; these are the defaults spelled out.
provider "hypeman" {
  data_dir           = "/var/lib/hypeman"
  accelerator        = "auto"
  kernel             = "/var/cache/hypeman/kernel/vmlinuz"
  busybox            = "/bin/busybox"
  compress_snapshots = true
  # hypervisor defaults to cloud-hypervisor when it is installed, else qemu.
}
