# The quickstart: one microVM that prints a counter on its console. Flip it to Standby and back
# with -var state=Standby / -var state=Running: the counter continues where it stopped.

terraform {
  required_providers {
    hypeman = {
      source = "hypeman/hypeman"
    }
  }
}

variable "image" {
  description = "The image to boot. The default is a small local OCI layout that the demo builds."
  type        = string
  default     = "oci:/var/lib/hypeman-demo/image:latest"
}

variable "state" {
  description = "Running, Paused, Standby or Stopped."
  type        = string
  default     = "Running"
}

provider "hypeman" {}

resource "hypeman_instance" "counter" {
  name       = "quickstart-counter"
  image      = var.image
  memory     = "256MiB"
  entrypoint = ["/bin/sh", "-c", "i=0; while true; do echo \"$GREETING, count=$i\"; i=$((i+1)); sleep 1; done"]
  env = {
    GREETING = "hello from hypeman"
  }
  state = var.state
}

output "console_log" {
  description = "The VM's serial console on the host: tail -f it to watch the counter."
  value       = hypeman_instance.counter.console_log
}

output "state" {
  value = hypeman_instance.counter.state
}

output "snapshot_bytes" {
  description = "Size of the Standby snapshot on disk (0 unless in Standby)."
  value       = hypeman_instance.counter.snapshot_bytes
}
