# Look an instance up by name (or by id, with id = "...").
data "hypeman_instance" "web" {
  name = "web"
}

output "web_state" {
  value = data.hypeman_instance.web.state
}

output "web_address" {
  value = data.hypeman_instance.web.ip_address
}

output "web_console_log" {
  value = data.hypeman_instance.web.console_log
}
