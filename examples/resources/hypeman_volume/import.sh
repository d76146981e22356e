# A volume can be imported by its id (a ULID)...
terraform import hypeman_volume.pgdata 01JD8X4ZQ6T7N5B2V3C9M0K1HA

# ...or by its name.
terraform import hypeman_volume.pgdata pgdata
