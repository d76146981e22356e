#!/usr/bin/env bash
# make demo: boots a microVM with `terraform apply` on this host, shows its console, puts it in Standby
# and restores it. Installs what is missing, builds the provider and points Terraform at it with
# dev_overrides; the image is a small local OCI layout, so no registry is needed.
#
#   scripts/demo.sh            run the demo (the VM keeps running afterwards)
#   scripts/demo.sh destroy    destroy it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH=/usr/local/go/bin:$PATH CHECKPOINT_DISABLE=1
demo=$root/examples/quickstart/.demo
image_dir=/var/lib/hypeman-demo/image
mkdir -p "$demo"

cat > "$demo/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "hypeman/hypeman" = "$demo/bin"
  }
  direct {}
}
RC
export TF_CLI_CONFIG_FILE=$demo/terraformrc
tf() { terraform -chdir=examples/quickstart "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "${1:-}" = destroy ]; then
  tf destroy -auto-approve -var "image=oci:$image_dir:latest"
  exit 0
fi

step "Installing packages and the kernel (skipped when present)"
scripts/install-deps.sh
step "Building the provider"
go build -o "$demo/bin/terraform-provider-hypeman" .
step "Building a small local image (busybox, OCI layout in $image_dir)"
go run ./internal/tools/demoimage -o "$image_dir" -tag latest

console() {
  local log
  log=$(tf output -raw console_log)
  echo "--- $log (last lines) ---"
  tail -n "${1:-8}" "$log" | tr -d '\r'
}

step "terraform apply: create and boot the VM"
tf apply -auto-approve -var "image=oci:$image_dir:latest"
sleep 2
console 10

step "terraform apply -var state=Standby: snapshot to disk, VMM stopped"
tf apply -auto-approve -var "image=oci:$image_dir:latest" -var state=Standby
tf output

step "terraform apply -var state=Running: restore, the counter continues"
tf apply -auto-approve -var "image=oci:$image_dir:latest" -var state=Running
sleep 2
console 6

step "Done. The VM keeps running; 'make demo-destroy' removes it."
