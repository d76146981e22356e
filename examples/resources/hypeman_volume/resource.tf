resource "hypeman_volume" "pgdata" {
  name = "pgdata"
  # Grows in place; never shrinks.
  size = "20GiB"
}

# Seeded at create from a tar archive on the host.
resource "hypeman_volume" "assets" {
  name   = "assets"
  size   = "1GiB"
  source = "tar:/srv/releases/assets.tar"
}

resource "hypeman_instance" "db" {
  name  = "db"
  image = "docker.io/library/postgres:17"

  # Replacing the instance (a new image, more memory) keeps the volume and its data.
  volume {
    volume_id  = hypeman_volume.pgdata.id
    mount_path = "/var/lib/postgresql/data"
  }

  volume {
    volume_id  = hypeman_volume.assets.id
    mount_path = "/srv/assets"
    readonly   = true
  }
}
