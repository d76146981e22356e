data "hypeman_volume" "pgdata" {
  name = "pgdata"
}

output "pgdata_holders" {
  value = [for a in data.hypeman_volume.pgdata.attached_to : a.instance_name]
}
