data "hypeman_volumes" "all" {}

output "unattached_volumes" {
  value = [for v in data.hypeman_volumes.all.volumes : v.name if length(v.attached_to) == 0]
}
