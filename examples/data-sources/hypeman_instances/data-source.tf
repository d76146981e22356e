data "hypeman_instances" "all" {}

# Which instances on the host are not running?
output "not_running" {
  value = [for i in data.hypeman_instances.all.instances : "${i.name}: ${i.state}" if i.state != "Running"]
}
