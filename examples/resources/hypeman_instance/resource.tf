resource "hypeman_instance" "web" {
  name   = "web"
  image  = "docker.io/library/nginx:1.27"
  vcpus  = 2
  memory = "1GiB"

  env = {
    NGINX_ENTRYPOINT_QUIET_LOGS = "1"
  }

  # Running (default), Paused, Standby or Stopped; changing it never replaces the VM.
  state = "Running"

  timeouts = {
    create = "15m"
  }
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
}

output "web_console_log" {
  value = hypeman_instance.web.console_log
}
