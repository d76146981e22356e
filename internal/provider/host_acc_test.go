package provider

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"golang.org/x/crypto/ssh"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The SSH acceptance tests reach this machine through a throwaway sshd on 127.0.0.1, so what the
// provider did over SSH is checked on the local filesystem and process table.

// sshSettings are provider lines that log in to d with keyFile and check its key in knownHosts.
func sshSettings(d *testutil.SSHD, keyFile, knownHosts string) string {
	return fmt.Sprintf(`  host = %q
  ssh {
    private_key_file = %q
    known_hosts_file = %q
    use_agent        = false
    ssh_config_file  = "none"
  }
`, d.URL(), keyFile, knownHosts)
}

// logins counts the logins d has accepted.
func logins(d *testutil.SSHD) int { return strings.Count(d.Log(), "Accepted publickey") }

func TestAccInstanceOverSSH(t *testing.T) {
	env := newAccEnv(t)
	d := testutil.StartSSHD(t)
	const addr = "hypeman_instance.ssh"
	v := &vm{env: env, addr: addr}
	provider := env.providerBlock(sshSettings(d, d.ClientKeyFile, d.KnownHostsFile))
	config := func(state string) string { return provider + env.instanceResource("ssh", "acc-ssh", state, "one") }
	dataSources := `
data "hypeman_instance" "by_name" {
  name = hypeman_instance.ssh.name
}

data "hypeman_instances" "all" {
  depends_on = [hypeman_instance.ssh]
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             v.destroyed(t),
		Steps: []resource.TestStep{
			v.created(v.stepTo(t, config("Running"), "Running",
				resource.TestCheckResourceAttrSet(addr, "pid"),
				resource.TestCheckResourceAttr(addr, "hypervisor", "qemu"),
				resource.TestCheckResourceAttrWith(addr, "directory", func(dir string) error {
					if !strings.HasPrefix(dir, env.dataDir+"/") {
						return fmt.Errorf("directory %s is not under the data_dir %s", dir, env.dataDir)
					}
					return nil
				}),
				v.counting(t))),
			v.stepTo(t, config("Standby"), "Standby", v.inStandby(t)),
			v.stepTo(t, config("Running"), "Running", v.resumed(t)),
			{
				Config: config("Running") + dataSources,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPair("data.hypeman_instance.by_name", "id", addr, "id"),
					resource.TestCheckResourceAttrPair("data.hypeman_instance.by_name", "pid", addr, "pid"),
					resource.TestCheckResourceAttr("data.hypeman_instance.by_name", "state", "Running"),
					resource.TestCheckResourceAttr("data.hypeman_instances.all", "instances.#", "1"),
					resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.0.id", addr, "id")),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateId:     "acc-ssh",
				ImportStateVerify: true,
			},
		},
	})
	// Every Terraform run of the test was served by the one connection of the provider process.
	if n := logins(d); n != 1 {
		t.Errorf("sshd accepted %d logins during the test, want 1", n)
	}
}

func TestAccSSHLoginFailuresSayWhatToDo(t *testing.T) {
	requireAcc(t)
	d := testutil.StartSSHD(t)
	wrongKey, wrongPub := testutil.NewSSHKey(t, t.TempDir(), "ed25519")
	unknownTo := emptyKnownHosts(t)
	config := func(keyFile, knownHosts string) string {
		return fmt.Sprintf(`
provider "hypeman" {
  data_dir = %q
%s}

resource "hypeman_instance" "x" {
  name  = "acc-ssh-login"
  image = "alpine:3.20"
}
`, testutil.ShortTempDir(t), sshSettings(d, keyFile, knownHosts))
	}
	port := strconv.Itoa(d.Port)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		Steps: []resource.TestStep{
			{
				// known_hosts does not list the host: the fingerprint and how to trust it.
				Config:   config(d.ClientKeyFile, unknownTo),
				PlanOnly: true,
				ExpectError: wrapped(fmt.Sprintf("presented ssh-ed25519 %s, which is not in %s; refusing to connect. If that fingerprint is the host's, trust it with `ssh-keyscan -p %s 127.0.0.1 >> %s`",
					ssh.FingerprintSHA256(d.HostKey), unknownTo, port, unknownTo)),
			},
			{
				// The host does not accept the key: every method tried, with the key's fingerprint and file.
				Config:   config(wrongKey, d.KnownHostsFile),
				PlanOnly: true,
				ExpectError: wrapped(fmt.Sprintf("accepted none of the keys offered; methods tried: publickey ssh-ed25519 %s (key file %s)",
					ssh.FingerprintSHA256(wrongPub), wrongKey)),
			},
		},
	})
	if n := logins(d); n != 0 {
		t.Errorf("sshd accepted %d logins, want none", n)
	}
}
