# Terraform 1.5 and later: import with a block, by name or by id.
import {
  to = hypeman_volume.pgdata
  id = "pgdata"
}
