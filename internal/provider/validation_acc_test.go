package provider

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// TestAccBadInputIsRejectedAtPlan runs `terraform plan` on one bad input per row, for every class
// of bad input of the provider block, its ssh and network blocks, the resource, its timeouts and
// the data sources. Each must fail the plan with a message that names the attribute, the value
// and what is allowed. Nothing boots: the plan never gets to apply.
func TestAccBadInputIsRejectedAtPlan(t *testing.T) {
	requireAcc(t)
	t.Setenv("HYPEMAN_HOST", "")
	dataDir := testutil.ShortTempDir(t)
	files := testutil.ShortTempDir(t)
	textFile := filepath.Join(files, "notes.txt")
	if err := os.WriteFile(textFile, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(files, "missing")
	limit := instances.MaxDataDirLen(builtin.Drivers())
	tooLong := "/" + strings.Repeat("d", limit)
	hostKey := `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"`

	// provider is the provider block with settings (lines or blocks) added to a data_dir and an
	// accelerator of its own, unless settings set them.
	provider := func(settings ...string) string {
		lines := slices.Clone(settings)
		for name, line := range map[string]string{"data_dir": fmt.Sprintf("data_dir = %q", dataDir), "accelerator": `accelerator = "tcg"`} {
			if !slices.ContainsFunc(settings, func(s string) bool { return strings.HasPrefix(s, name+" ") }) {
				lines = append(lines, line)
			}
		}
		return "provider \"hypeman\" {\n  " + strings.Join(lines, "\n  ") + "\n}\n"
	}
	// instance is a valid instance with attributes replaced or added.
	instance := func(set map[string]string) string {
		attrs := map[string]string{"name": `"acc-bad"`, "image": `"alpine:3.20"`}
		maps.Copy(attrs, set)
		var b strings.Builder
		b.WriteString("resource \"hypeman_instance\" \"bad\" {\n")
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			fmt.Fprintf(&b, "  %s = %s\n", k, attrs[k])
		}
		return b.String() + "}\n"
	}
	attr := func(name, value string) string { return provider() + instance(map[string]string{name: value}) }
	setting := func(settings ...string) string { return provider(settings...) + instance(nil) }
	ssh := func(lines ...string) string {
		return setting(`host = "ssh://127.0.0.1:1"`, "ssh {\n    "+strings.Join(lines, "\n    ")+"\n  }")
	}
	network := func(lines ...string) string { return "network {\n    " + strings.Join(lines, "\n    ") + "\n  }" }
	lookup := func(attrs string) string {
		return provider() + "data \"hypeman_instance\" \"x\" {\n  " + attrs + "\n}\n"
	}

	tests := []struct {
		class  string
		config string
		want   string // the detail, which names the attribute, the value and what is allowed
	}{
		// The resource.
		{"name", attr("name", `"Web_1"`), `name "Web_1" is not allowed: 1 to 63 characters`},
		{"image", attr("image", `"docker://alpine"`), `invalid image reference "docker://alpine": the "docker" transport is not supported`},
		{"size that is no size", attr("memory", `"lots"`), `memory "lots" is not allowed: from 128MiB to 1TiB, in whole MiB, written as a whole number of bytes or a number with a unit`},
		{"size below its minimum", attr("memory", `"64MiB"`), `memory "64MiB" is not allowed: from 128MiB to 1TiB, in whole MiB`},
		{"size above its maximum", attr("memory", `"1000TiB"`), `memory "1000TiB" is not allowed: from 128MiB to 1TiB, in whole MiB`},
		{"size above its maximum", attr("hotplug_memory", `"2TiB"`), `hotplug_memory "2TiB" is not allowed: 0 or a multiple of 128MiB up to 1TiB`},
		{"size above its maximum", attr("overlay_size", `"1000TiB"`), `overlay_size "1000TiB" is not allowed: from 64MiB to 16TiB, in whole MiB`},
		{"size off its step", attr("hotplug_memory", `"100MiB"`), `hotplug_memory "100MiB" is not allowed: 0 or a multiple of 128MiB`},
		{"size below its minimum", attr("overlay_size", `"1MiB"`), `overlay_size "1MiB" is not allowed: from 64MiB to 16TiB`},
		{"memory beyond the host's", attr("memory", `"1TiB"`), `memory "1TiB" is not allowed: at most the host's`},
		{"memory beyond the host's", provider() + instance(map[string]string{"memory": `"1GiB"`, "hotplug_memory": `"1TiB"`}),
			`hotplug_memory "1TiB" is not allowed: at most`},
		{"vcpus out of range", attr("vcpus", "0"), `vcpus "0" is not allowed: a whole number from 1 to 128`},
		{"vcpus not a whole number", attr("vcpus", "1.5"), `vcpus "1.5" is not allowed: a whole number from 1 to 128`},
		{"NUL byte", attr("entrypoint", `["/bin/sh\u0000", "-c"]`), `entrypoint[0] "/bin/sh\x00" is not allowed: any text without NUL bytes`},
		{"NUL byte", attr("cmd", `["ok", "a\u0000b"]`), `cmd[1] "a\x00b" is not allowed: any text without NUL bytes`},
		{"NUL byte", attr("env", `{ TOKEN = "se\u0000cret" }`), `env[TOKEN] "(value)" is not allowed: any text without NUL bytes`},
		{"empty entrypoint", attr("entrypoint", "[]"), `entrypoint "[]" is not allowed: a list whose first item is the program to run, such as ["/bin/sh", "-c", "echo hi"]; leave entrypoint out for the image's own`},
		{"empty entrypoint", attr("entrypoint", `["", "x"]`), `entrypoint[0] "" is not allowed: the program to run: an absolute path in the image or a name found on its PATH; leave entrypoint out`},
		{"env key", attr("env", `{ "1BAD" = "x" }`), `env key "1BAD" is not allowed: a letter or '_'`},
		{"workdir", attr("workdir", `"tmp"`), `workdir "tmp" is not allowed: an absolute path`},
		{"state", attr("state", `"Sleeping"`), `state "Sleeping" is not allowed: one of Running, Paused, Standby, Stopped`},
		{"timeouts", attr("timeouts", `{ create = "-1m" }`), `timeouts.create "-1m" is not allowed: a positive duration`},
		{"timeouts", attr("timeouts", `{ delete = "0s" }`), `timeouts.delete "0s" is not allowed: a positive duration`},
		{"timeouts", attr("timeouts", `{ read = "soon" }`), `timeouts.read "soon" is not allowed: a positive duration: a number and a unit (h, m, s, ms), such as "30s"`},
		{"instance network", attr("network", `{ ip = "10.100.0.5" }`), `the provider has no network block`},
		{"instance network", attr("network", `{ mac = "01:00:5e:00:00:01" }`), `network.mac "01:00:5e:00:00:01" is not allowed: a unicast MAC address`},
		{"instance network", attr("network", `{ peer_groups = ["web", "Back_End"] }`), `network.peer_groups "Back_End" is not allowed: 1 to 63 characters`},
		{"instance network", attr("network", `{ enabled = false, peer_groups = ["web"] }`), `network.peer_groups is not allowed with enabled = false`},
		{"instance network", provider(network(`subnet = "10.123.0.0/24"`)) + instance(map[string]string{"network": `{ ip = "10.124.0.5" }`}),
			`network.ip "10.124.0.5" is not allowed: an address of the provider's subnet 10.123.0.0/24`},

		// The provider block.
		{"accelerator", setting(`accelerator = "fast"`), `value must be one of: ["auto" "kvm" "tcg"], got: "fast"`},
		{"empty data_dir", setting(`data_dir = ""`), fmt.Sprintf(`data_dir "" is not allowed: an absolute path on the host of at most %d bytes`, limit)},
		{"data_dir that is a file", setting(fmt.Sprintf("data_dir = %q", textFile)), fmt.Sprintf(`data_dir %q is a file on the host, not a directory; allowed: a directory`, textFile)},
		{"data_dir too long", setting(fmt.Sprintf("data_dir = %q", tooLong)), fmt.Sprintf(`data_dir %q has %d bytes, more than the %d allowed`, tooLong, len(tooLong), limit)},
		{"missing kernel", setting(fmt.Sprintf("kernel = %q", missing)), fmt.Sprintf(`kernel %q does not exist on the host; allowed: an uncompressed PVH vmlinux or a distribution bzImage`, missing)},
		{"non-kernel kernel", setting(fmt.Sprintf("kernel = %q", textFile)), fmt.Sprintf(`kernel %q is not a Linux kernel: neither an ELF vmlinux nor a bzImage (no "HdrS" boot header at 0x202`, textFile)},
		{"empty kernel", setting(`kernel = ""`), `kernel "" is not allowed: an absolute path on the host; leave kernel out (or null) for the default`},
		{"missing busybox", setting(fmt.Sprintf("busybox = %q", missing)), fmt.Sprintf(`busybox %q does not exist on the host; allowed: a statically linked busybox executable`, missing)},
		{"missing kernel_modules", setting(fmt.Sprintf("kernel_modules = %q", missing)), fmt.Sprintf(`kernel_modules %q does not exist on the host; allowed: the kernel's module directory`, missing)},
		{"host", setting(`host = "http://10.0.0.5"`), `host "http://10.0.0.5" has the scheme "http"; allowed: "" or "unix://" for this machine, or "ssh://[user@]host[:port]"`},
		{"host port", setting(`host = "ssh://root@10.0.0.5:99999"`), `host "ssh://root@10.0.0.5:99999" has the port "99999"; a port is a number from 1 to 65535`},
		{"host empty user", setting(`host = "ssh://@10.0.0.5"`), `host "ssh://@10.0.0.5" has an empty user name before '@'`},
		{"network", setting(network(`subnet = "10.123.0.0/24"`, `gateway = "10.124.0.1"`)), `network gateway "10.124.0.1" is not allowed: an address inside 10.123.0.0/24`},
		{"network", setting(network(`host_ports = [443, 0]`)), `value must be between 1 and 65535, got: 0`},
		{"network", setting(network(`subnet = "10.123.0.1/24"`)), `network subnet "10.123.0.1/24" is not allowed: the network address with no host bits set: 10.123.0.0/24`},
		{"empty network setting", setting(network(`bridge = ""`)), `network bridge "" is not allowed: a value that is not empty; leave bridge out (or null) for the default: $HYPEMAN_BRIDGE, else vmbr0`},

		// The ssh block.
		{"ssh block without an SSH host", setting("ssh {\n    user = \"root\"\n  }"), `an ssh block needs an SSH host, but host "" is the machine Terraform runs on`},
		{"ssh conflict", ssh("insecure_ignore_host_key = true", "host_key = "+hostKey), `ssh insecure_ignore_host_key = true is not allowed together with host_key: the host's key is either pinned (host_key), looked up in a known_hosts file (known_hosts_file) or not checked at all`},
		{"ssh conflict", ssh("insecure_ignore_host_key = true", `known_hosts_file = "/etc/ssh/ssh_known_hosts"`), `ssh insecure_ignore_host_key = true is not allowed together with known_hosts_file`},
		{"ssh conflict", ssh("host_key = "+hostKey, `known_hosts_file = "/k"`), `Attribute "ssh.host_key" cannot be specified when "ssh.known_hosts_file" is specified`},
		{"ssh conflict", setting(`host = "ssh://root@127.0.0.1:1"`, "ssh {\n    user = \"ops\"\n  }"), `the address "ssh://root@127.0.0.1:1" logs in as "root" but user is "ops"; set one of them`},
		{"empty ssh setting", ssh(`user = ""`), `ssh user "" is not allowed: a value that is not empty; leave user out (or null)`},
		{"ssh host_key", ssh(`host_key = "ssh-ed25519"`), `host_key "ssh-ed25519" is neither a known_hosts line nor "type base64"`},
		{"ssh keepalive", ssh(`keepalive = "soon"`), `ssh keepalive "soon" is not allowed: use a duration of at least 1s`},

		// The data sources.
		{"data source id", lookup(`id = "web-1"`), `id "web-1" is not allowed: a ULID: 26 characters of Crockford base32`},
		{"data source name", lookup(`name = "Web_1"`), `name "Web_1" is not allowed: 1 to 63 characters`},
	}
	steps := make([]resource.TestStep, 0, len(tests)+1)
	for _, tt := range tests {
		steps = append(steps, resource.TestStep{Config: tt.config, PlanOnly: true, ExpectError: wrapped(tt.want)})
	}
	// Values known only after apply are never refused: this plan must succeed.
	steps = append(steps, resource.TestStep{
		Config: provider() + `
resource "terraform_data" "later" {
  input = "x"
}
` + instance(map[string]string{
			"vcpus": "length(terraform_data.later.output)", "memory": "terraform_data.later.output", "overlay_size": "terraform_data.later.output",
			"hotplug_memory": "terraform_data.later.output", "entrypoint": "[terraform_data.later.output]", "cmd": "[terraform_data.later.output]",
			"env": "{ A = terraform_data.later.output }", "workdir": "terraform_data.later.output",
			"timeouts": "{ create = terraform_data.later.output }",
		}),
		PlanOnly:           true,
		ExpectNonEmptyPlan: true,
	})
	classes := map[string]bool{}
	for _, tt := range tests {
		classes[tt.class] = true
	}
	t.Logf("%d bad inputs in %d classes, and one plan of values known only after apply", len(tests), len(classes))
	resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: accProviders, Steps: steps})
}
