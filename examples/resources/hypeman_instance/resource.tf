resource "hypeman_instance" "web" {
  name   = "web"
  image  = "docker.io/library/nginx:1.27"
  vcpus  = 2
  memory = "1GiB"

  env = {
    NGINX_ENTRYPOINT_QUIET_LOGS = "1"
  }

  # A fixed address on the provider's network; leave network out for the next free one.
  network = {
    ip = "10.100.0.10"
  }

  # Running (default), Paused, Standby or Stopped; changing it never replaces the VM.
  state = "Running"

  # Create, start, restart and restore succeed only once nginx answers; changing this restarts nothing.
  wait_for = {
    http  = { port = 80, path = "/" }
    delay = "2s"
  }

  # A volume keeps its data when the instance is replaced.
  volume {
    volume_id  = hypeman_volume.content.id
    mount_path = "/usr/share/nginx/html"
  }

  timeouts = {
    create = "15m"
  }
}

resource "hypeman_volume" "content" {
  name = "web-content"
  size = "1GiB"
}

# A one-shot program: the VM runs as long as the program does.
resource "hypeman_instance" "job" {
  name       = "nightly-report"
  image      = "docker.io/library/alpine:3.20"
  entrypoint = ["/bin/sh", "-c"]
  cmd        = ["echo \"report for $REPORT_DATE\"; sleep infinity"]
  env = {
    REPORT_DATE = "2026-01-31"
  }
  workdir      = "/tmp"
  overlay_size = "2GiB"

  # Without a network interface, only a console line can be waited for.
  wait_for = {
    console = "^report for "
  }

  # This one needs no network.
  network = {
    enabled = false
  }
}

output "web_url" {
  # Kept for the instance's whole life, across Stop, Standby and restore.
  value = "http://${hypeman_instance.web.ip_address}/"
}

output "web_console_log" {
  value = hypeman_instance.web.console_log
}
