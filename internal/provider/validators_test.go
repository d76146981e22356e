package provider

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/instances"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// validate runs ValidateResourceConfig on a configuration with name and image set plus attrs.
func validate(t *testing.T, attrs map[string]tftypes.Value) []*tfprotov6.Diagnostic {
	t.Helper()
	s := protocolServer(t)
	typ := resourceType(t, s)
	cfg := merge(map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20")}, attrs)
	resp, err := s.ValidateResourceConfig(context.Background(), &tfprotov6.ValidateResourceConfigRequest{
		TypeName: "hypeman_instance",
		Config:   dynamic(t, typ, object(typ, cfg)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return withoutDeprecation(resp.Diagnostics)
}

// withoutDeprecation drops the warning that a deprecated attribute (hotplug_memory) is set, which
// TestHotplugMemoryIsDeprecatedWithWhatToWriteInstead checks.
func withoutDeprecation(diags []*tfprotov6.Diagnostic) []*tfprotov6.Diagnostic {
	var out []*tfprotov6.Diagnostic
	for _, d := range diags {
		if d.Summary != "Attribute Deprecated" {
			out = append(out, d)
		}
	}
	return out
}

func TestHotplugMemoryIsDeprecatedWithWhatToWriteInstead(t *testing.T) {
	s := protocolServer(t)
	typ := resourceType(t, s)
	resp, err := s.ValidateResourceConfig(context.Background(), &tfprotov6.ValidateResourceConfigRequest{
		TypeName: "hypeman_instance",
		Config: dynamic(t, typ, object(typ, map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20"),
			"memory": str("512MiB"), "hotplug_memory": str("256MiB")})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityWarning ||
		!strings.Contains(resp.Diagnostics[0].Detail, "write memory = memory + hotplug_memory") ||
		!strings.Contains(resp.Diagnostics[0].Detail, "max_memory") {
		t.Fatalf("want one deprecation warning saying what to write instead, got %v", diagText(resp.Diagnostics))
	}
}

func num(n any) tftypes.Value { return tftypes.NewValue(tftypes.Number, n) }

// unknown is a value of typ known only after apply.
func unknown(typ tftypes.Type) tftypes.Value { return tftypes.NewValue(typ, tftypes.UnknownValue) }

// timeoutsValue is a timeouts object of typ (the resource's) with the given deadlines.
func timeoutsValue(t *testing.T, set map[string]tftypes.Value) tftypes.Value {
	t.Helper()
	tt, ok := resourceType(t, protocolServer(t)).AttributeTypes["timeouts"].(tftypes.Object)
	if !ok {
		t.Fatal("timeouts is not an object")
	}
	return object(tt, set)
}

func TestBadInstanceConfigIsRejectedNamingValueAndAllowedForms(t *testing.T) {
	tests := []struct {
		name  string
		attr  string
		value tftypes.Value
		want  []string // every one must appear in the error detail
		at    string   // the diagnostic's path, when it is not attr itself
	}{
		{"name with capitals", "name", str("Web_1"), []string{`"Web_1"`, instances.NameRule}, ""},
		{"name too long", "name", str(strings.Repeat("a", 64)), []string{strings.Repeat("a", 64), instances.NameRule}, ""},
		{"name ending in a dash", "name", str("web-"), []string{`"web-"`, instances.NameRule}, ""},
		{"memory that is not a size", "memory", str("lots"), []string{`memory "lots"`, "from 128MiB to 1TiB", units.Allowed}, ""},
		{"negative memory", "memory", str("-1GiB"), []string{`memory "-1GiB"`, "from 128MiB to 1TiB"}, ""},
		{"memory below the minimum", "memory", str("64MiB"), []string{`memory "64MiB"`, "from 128MiB to 1TiB"}, ""},
		{"memory above the maximum", "memory", str("1000TiB"), []string{`memory "1000TiB"`, "from 128MiB to 1TiB"}, ""},
		{"memory in bytes that are not whole MiB", "memory", str("134217729"), []string{`"134217729"`, "in whole MiB"}, ""},
		{"hotplug memory off the 128MiB step", "hotplug_memory", str("100MiB"), []string{`hotplug_memory "100MiB"`, "multiple of 128MiB"}, ""},
		{"hotplug memory above the maximum", "hotplug_memory", str("2TiB"), []string{`hotplug_memory "2TiB"`, "up to 1TiB"}, ""},
		{"overlay below the minimum", "overlay_size", str("1MiB"), []string{`overlay_size "1MiB"`, "from 64MiB to 16TiB"}, ""},
		{"overlay above the maximum", "overlay_size", str("17TiB"), []string{`overlay_size "17TiB"`, "from 64MiB to 16TiB"}, ""},
		{"unknown state", "state", str("Sleeping"), []string{`state "Sleeping"`, "Running, Paused, Standby, Stopped"}, ""},
		{"state in the wrong case", "state", str("running"), []string{`state "running"`, `write it as "Running"`}, ""},
		{"observed-only state", "state", str("Shutdown"), []string{`state "Shutdown"`, "Running, Paused, Standby, Stopped"}, ""},
		{"unsupported image transport", "image", str("docker://alpine"), []string{`"docker://alpine"`, "oci:PATH"}, ""},
		{"image with spaces", "image", str(" alpine"), []string{`" alpine"`, "white space"}, ""},
		{"env key starting with a digit", "env", strMap(map[string]string{"1BAD": "x"}), []string{`env key "1BAD"`, "a letter or '_'"}, `env["1BAD"]`},
		{"env key with a space", "env", strMap(map[string]string{"MY VAR": "x"}), []string{`"MY VAR"`, "a letter or '_'"}, `env["MY VAR"]`},
		{"relative workdir", "workdir", str("tmp"), []string{`workdir "tmp"`, "absolute path"}, ""},
		{"no vcpus", "vcpus", num(0), []string{`vcpus "0"`, instances.VCPUsRule}, ""},
		{"too many vcpus", "vcpus", num(129), []string{`vcpus "129"`, instances.VCPUsRule}, ""},
		{"vcpus with a fraction", "vcpus", num(big.NewFloat(1.5)), []string{`vcpus "1.5"`, instances.VCPUsRule}, ""},
		{"vcpus beyond any integer", "vcpus", num(big.NewFloat(1e30)), []string{`vcpus "1e+30"`, instances.VCPUsRule}, ""},
		{"too many max vcpus", "max_vcpus", num(129), []string{`max_vcpus "129"`, instances.MaxVCPUsRule}, ""},
		{"negative max vcpus", "max_vcpus", num(-1), []string{`max_vcpus "-1"`, instances.MaxVCPUsRule}, ""},
		{"max vcpus with a fraction", "max_vcpus", num(big.NewFloat(2.5)), []string{`max_vcpus "2.5"`, instances.MaxVCPUsRule}, ""},
		{"empty entrypoint", "entrypoint", strList(), []string{`entrypoint "[]"`, "leave entrypoint out for the image's own"}, ""},
		{"entrypoint naming no program", "entrypoint", strList("", "-c"), []string{`entrypoint[0] ""`, "the program to run", "leave entrypoint out"}, "entrypoint[0]"},
		{"NUL byte in an entrypoint item", "entrypoint", strList("/bin/sh", "a\x00b"), []string{`entrypoint[1] "a\x00b"`, "without NUL bytes"}, "entrypoint[1]"},
		{"null entrypoint item", "entrypoint", tftypes.NewValue(tftypes.List{ElementType: tftypes.String}, []tftypes.Value{tftypes.NewValue(tftypes.String, nil)}),
			[]string{"entrypoint[0] is null", `write "" for an empty argument`}, "entrypoint[0]"},
		{"NUL byte in a cmd item", "cmd", strList("ok", "\x00"), []string{`cmd[1] "\x00"`, "without NUL bytes"}, "cmd[1]"},
		{"NUL byte in an env value", "env", strMap(map[string]string{"TOKEN": "se\x00cret"}), []string{`env[TOKEN] "(value)"`, "without NUL bytes"}, `env["TOKEN"]`},
		{"negative create timeout", "timeouts", timeoutsValue(t, map[string]tftypes.Value{"create": str("-1m")}),
			[]string{`timeouts.create "-1m"`, "a positive duration", "default 10m"}, "timeouts.create"},
		{"zero delete timeout", "timeouts", timeoutsValue(t, map[string]tftypes.Value{"delete": str("0")}),
			[]string{`timeouts.delete "0"`, "a positive duration", "default 5m"}, "timeouts.delete"},
		{"read timeout that is no duration", "timeouts", timeoutsValue(t, map[string]tftypes.Value{"read": str("soon")}),
			[]string{`timeouts.read "soon"`, `"30s"`, "default 2m"}, "timeouts.read"},
		{"empty update timeout", "timeouts", timeoutsValue(t, map[string]tftypes.Value{"update": str("")}),
			[]string{`timeouts.update ""`, "a positive duration"}, "timeouts.update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validate(t, map[string]tftypes.Value{tt.attr: tt.value})
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %d: %v", len(diags), diagText(diags))
			}
			d := diags[0]
			if d.Severity != tfprotov6.DiagnosticSeverityError {
				t.Errorf("severity %v, want error", d.Severity)
			}
			want := tt.at
			if want == "" {
				want = tt.attr
			}
			if got := pathString(d.Attribute); got != want {
				t.Errorf("diagnostic is on %s, want %s", got, want)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, d.Detail)
				}
			}
		})
	}
}

func TestGoodInstanceConfigPassesValidation(t *testing.T) {
	tests := []struct {
		name  string
		attrs map[string]tftypes.Value
	}{
		{"defaults only", nil},
		{"sizes in every unit", map[string]tftypes.Value{"memory": str("1GB"), "hotplug_memory": str("256MiB"), "overlay_size": str("0.5GiB")}},
		{"every settable state", map[string]tftypes.Value{"state": str("Standby")}},
		{"oci layout image", map[string]tftypes.Value{"image": str("oci:/var/lib/images/app:v1")}},
		{"registry image pinned by digest", map[string]tftypes.Value{"image": str("registry.example.com:5000/app@sha256:" + strings.Repeat("a", 64))}},
		{"program", map[string]tftypes.Value{
			"entrypoint": strList("/bin/sh", "-c"), "cmd": strList("echo $A"),
			"env": strMap(map[string]string{"A": "1", "_B.c-d": "x"}), "workdir": str("/srv"),
		}},
		{"no arguments and empty ones", map[string]tftypes.Value{"entrypoint": strList("/bin/echo", ""), "cmd": strList()}},
		{"the largest sizes", map[string]tftypes.Value{"memory": str("1TiB"), "hotplug_memory": str("1TiB"), "overlay_size": str("16TiB"), "vcpus": num(128)}},
		{"positive timeouts", map[string]tftypes.Value{"timeouts": timeoutsValue(t, map[string]tftypes.Value{
			"create": str("1h30m"), "read": str("1s"), "update": str("20m"), "delete": str("500ms")})}},
		{"values known only after apply", map[string]tftypes.Value{
			"vcpus": unknown(tftypes.Number), "memory": unknown(tftypes.String), "hotplug_memory": unknown(tftypes.String),
			"overlay_size": unknown(tftypes.String), "workdir": unknown(tftypes.String), "state": unknown(tftypes.String),
			"entrypoint": tftypes.NewValue(tftypes.List{ElementType: tftypes.String}, []tftypes.Value{unknown(tftypes.String)}),
			"cmd":        unknown(tftypes.List{ElementType: tftypes.String}),
			"env":        tftypes.NewValue(tftypes.Map{ElementType: tftypes.String}, map[string]tftypes.Value{"A": unknown(tftypes.String)}),
			"timeouts":   timeoutsValue(t, map[string]tftypes.Value{"create": unknown(tftypes.String)}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diags := validate(t, tt.attrs); len(diags) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(diags))
			}
		})
	}
}

func diagText(diags []*tfprotov6.Diagnostic) []string {
	var out []string
	for _, d := range diags {
		out = append(out, d.Summary+": "+d.Detail)
	}
	return out
}

// pathString writes a diagnostic's path as the framework does: timeouts.create, cmd[1], env["A"].
func pathString(p *tftypes.AttributePath) string {
	if p == nil {
		return "(none)"
	}
	var b strings.Builder
	for _, st := range p.Steps() {
		switch st := st.(type) {
		case tftypes.AttributeName:
			if b.Len() > 0 {
				b.WriteString(".")
			}
			b.WriteString(string(st))
		case tftypes.ElementKeyInt:
			fmt.Fprintf(&b, "[%d]", int64(st))
		case tftypes.ElementKeyString:
			fmt.Fprintf(&b, "[%q]", string(st))
		}
	}
	return b.String()
}

// validateProvider runs ValidateProviderConfig on the provider block attrs (blocks null unless given).
func validateProvider(t *testing.T, attrs map[string]tftypes.Value) []*tfprotov6.Diagnostic {
	t.Helper()
	s := protocolServer(t)
	typ := providerType(t, s)
	resp, err := s.ValidateProviderConfig(context.Background(), &tfprotov6.ValidateProviderConfigRequest{Config: dynamic(t, typ, object(typ, attrs))})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Diagnostics
}

// block is the provider's named block with attrs set.
func block(t *testing.T, name string, attrs map[string]tftypes.Value) tftypes.Value {
	t.Helper()
	bt, ok := providerType(t, protocolServer(t)).AttributeTypes[name].(tftypes.Object)
	if !ok {
		t.Fatalf("the provider has no %s block", name)
	}
	return object(bt, attrs)
}

func TestBadProviderConfigIsRejectedNamingValueAndAllowedForms(t *testing.T) {
	long := "/" + strings.Repeat("d", instances.MaxDataDirLen(builtin.Drivers()))
	yes := tftypes.NewValue(tftypes.Bool, true)
	hostKey := str("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
	tests := []struct {
		name  string
		attrs map[string]tftypes.Value
		at    string
		want  []string
	}{
		{"empty data_dir", map[string]tftypes.Value{"data_dir": str("")}, "data_dir", []string{`data_dir ""`, "leave data_dir out for the default /var/lib/hypeman"}},
		{"relative data_dir", map[string]tftypes.Value{"data_dir": str("var/hypeman")}, "data_dir", []string{`data_dir "var/hypeman"`, "an absolute path"}},
		{"data_dir too long for a socket path", map[string]tftypes.Value{"data_dir": str(long)}, "data_dir",
			[]string{fmt.Sprintf("has %d bytes, more than the %d allowed", len(long), len(long)-1), "unix socket path has at most 107 bytes"}},
		{"empty kernel", map[string]tftypes.Value{"kernel": str("")}, "kernel", []string{`kernel ""`, "leave kernel out (or null) for the default"}},
		{"relative busybox", map[string]tftypes.Value{"busybox": str("busybox")}, "busybox", []string{`busybox "busybox"`, "an absolute path on the host"}},
		{"empty kernel_modules", map[string]tftypes.Value{"kernel_modules": str("")}, "kernel_modules", []string{`kernel_modules ""`, "leave kernel_modules out"}},
		{"empty bridge", map[string]tftypes.Value{"network": block(t, "network", map[string]tftypes.Value{"bridge": str("")})}, "network.bridge",
			[]string{`network bridge ""`, "leave bridge out (or null) for the default: $HYPEMAN_BRIDGE, else vmbr0"}},
		{"empty gateway", map[string]tftypes.Value{"network": block(t, "network", map[string]tftypes.Value{"gateway": str("")})}, "network.gateway",
			[]string{`network gateway ""`, "the subnet's first address"}},
		{"insecure_ignore_host_key with host_key", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{
			"insecure_ignore_host_key": yes, "host_key": hostKey})}, "ssh.insecure_ignore_host_key",
			[]string{"insecure_ignore_host_key = true is not allowed together with host_key", "keep one of them"}},
		{"insecure_ignore_host_key with known_hosts_file", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{
			"insecure_ignore_host_key": yes, "known_hosts_file": str("/etc/ssh/ssh_known_hosts")})}, "ssh.insecure_ignore_host_key",
			[]string{"together with known_hosts_file"}},
		{"empty ssh user", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{"user": str("")})}, "ssh.user",
			[]string{`ssh user ""`, "leave user out (or null)"}},
		{"private_key that is no key", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{"private_key": str("hunter2")})}, "ssh.private_key",
			[]string{"private_key is not a PEM or OpenSSH private key"}},
		{"host_key that is no key", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{"host_key": str("ssh-ed25519")})}, "ssh.host_key",
			[]string{`host_key "ssh-ed25519" is neither a known_hosts line nor "type base64"`}},
		{"empty ssh_config_file", map[string]tftypes.Value{"ssh": block(t, "ssh", map[string]tftypes.Value{"ssh_config_file": str("")})}, "ssh.ssh_config_file",
			[]string{`ssh ssh_config_file ""`, `write "none" to read no file`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validateProvider(t, tt.attrs)
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %d: %v", len(diags), diagText(diags))
			}
			d := diags[0]
			if got := pathString(d.Attribute); d.Severity != tfprotov6.DiagnosticSeverityError || got != tt.at {
				t.Errorf("%v on %s, want an error on %s", d.Severity, got, tt.at)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("detail does not mention %q:\n%s", w, d.Detail)
				}
			}
			if strings.Contains(d.Detail, "hunter2") {
				t.Errorf("detail shows the private key: %s", d.Detail)
			}
		})
	}
}

func TestGoodProviderConfigPassesValidation(t *testing.T) {
	longest := "/" + strings.Repeat("d", instances.MaxDataDirLen(builtin.Drivers())-1)
	for name, attrs := range map[string]map[string]tftypes.Value{
		"nothing set":              nil,
		"the longest data_dir":     {"data_dir": str(longest)},
		"paths":                    {"kernel": str("/boot/vmlinuz"), "kernel_modules": str("/lib/modules/6.1.0"), "busybox": str("/bin/busybox")},
		"insecure alone":           {"ssh": block(t, "ssh", map[string]tftypes.Value{"insecure_ignore_host_key": tftypes.NewValue(tftypes.Bool, true)})},
		"insecure off with a pin":  {"ssh": block(t, "ssh", map[string]tftypes.Value{"insecure_ignore_host_key": tftypes.NewValue(tftypes.Bool, false), "host_key": str("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")})},
		"insecure with an unknown": {"ssh": block(t, "ssh", map[string]tftypes.Value{"insecure_ignore_host_key": tftypes.NewValue(tftypes.Bool, true), "host_key": unknown(tftypes.String)})},
		"unknown paths":            {"data_dir": unknown(tftypes.String), "kernel": unknown(tftypes.String), "busybox": unknown(tftypes.String)},
	} {
		t.Run(name, func(t *testing.T) {
			if diags := validateProvider(t, attrs); len(diags) != 0 {
				t.Fatalf("unexpected diagnostics: %v", diagText(diags))
			}
		})
	}
}

func TestBadDataSourceLookupIsRejectedBeforeReading(t *testing.T) {
	s := protocolServer(t)
	resp, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	typ, ok := resp.DataSourceSchemas["hypeman_instance"].ValueType().(tftypes.Object)
	if !ok {
		t.Fatal("the hypeman_instance data source schema is not an object")
	}
	tests := []struct {
		name  string
		attrs map[string]tftypes.Value
		want  string // "" wants no diagnostic
	}{
		{"an id that is no ULID", map[string]tftypes.Value{"id": str("web-1")}, `id "web-1" is not allowed: ` + instances.IDRule},
		{"an empty id", map[string]tftypes.Value{"id": str("")}, `id "" is not allowed`},
		{"a name that is no instance name", map[string]tftypes.Value{"name": str("Web_1")}, `name "Web_1" is not allowed: ` + instances.NameRule},
		{"an id", map[string]tftypes.Value{"id": str("01JD8X4ZQ6T7N5B2V3C9M0K1HA")}, ""},
		{"a name known only after apply", map[string]tftypes.Value{"name": unknown(tftypes.String)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.ValidateDataResourceConfig(context.Background(), &tfprotov6.ValidateDataResourceConfigRequest{
				TypeName: "hypeman_instance", Config: dynamic(t, typ, object(typ, tt.attrs)),
			})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == "" && len(resp.Diagnostics) != 0:
				t.Fatalf("unexpected diagnostics: %v", diagText(resp.Diagnostics))
			case tt.want != "" && (len(resp.Diagnostics) != 1 || !strings.Contains(resp.Diagnostics[0].Detail, tt.want)):
				t.Fatalf("want one error saying %q, got %v", tt.want, diagText(resp.Diagnostics))
			}
		})
	}
}

func TestMemoryBeyondTheHostsFailsThePlanOnceConfigured(t *testing.T) {
	configured := configuredServer(t, map[string]tftypes.Value{"data_dir": str(testutil.ShortTempDir(t))})
	validateOn := func(s tfprotov6.ProviderServer, attrs map[string]tftypes.Value) []*tfprotov6.Diagnostic {
		typ := resourceType(t, s)
		resp, err := s.ValidateResourceConfig(context.Background(), &tfprotov6.ValidateResourceConfigRequest{
			TypeName: "hypeman_instance",
			Config:   dynamic(t, typ, object(typ, merge(map[string]tftypes.Value{"name": str("web"), "image": str("alpine:3.20")}, attrs))),
		})
		if err != nil {
			t.Fatal(err)
		}
		return withoutDeprecation(resp.Diagnostics)
	}
	tests := []struct {
		name   string
		server tfprotov6.ProviderServer
		attrs  map[string]tftypes.Value
		at     string // "" wants no diagnostic
		want   string
	}{
		{"memory beyond the host's", configured, map[string]tftypes.Value{"memory": str("1TiB")}, "memory", `memory "1TiB" is not allowed: at most the host's`},
		{"hotplug memory beyond the host's", configured, map[string]tftypes.Value{"memory": str("1GiB"), "hotplug_memory": str("1TiB")},
			"hotplug_memory", `hotplug_memory "1TiB" is not allowed: at most`},
		{"a guest that fits", configured, map[string]tftypes.Value{"memory": str("256MiB"), "hotplug_memory": str("128MiB")}, "", ""},
		{"max memory beyond the host's", configured, map[string]tftypes.Value{"memory": str("1GiB"), "max_memory": str("1TiB")},
			"max_memory", `max_memory "1TiB" is not allowed: at most the host's`},
		{"max memory below memory", configured, map[string]tftypes.Value{"memory": str("1GiB"), "max_memory": str("512MiB")},
			"max_memory", `max_memory "512MiB" is not allowed: at least memory (1GiB)`},
		{"memory off the step below max memory", configured, map[string]tftypes.Value{"memory": str("300MiB"), "max_memory": str("1GiB")},
			"memory", `memory "300MiB" is not allowed: a multiple of 128MiB from 256MiB when max_memory (1GiB) is above it`},
		{"max memory with hotplug memory", configured, map[string]tftypes.Value{"memory": str("512MiB"), "max_memory": str("1GiB"), "hotplug_memory": str("256MiB")},
			"hotplug_memory", `hotplug_memory "256MiB" is not allowed: 0 when max_memory is set: hotplug_memory is deprecated; write memory = 768MiB and max_memory instead`},
		{"a ceiling that fits", configured, map[string]tftypes.Value{"memory": str("512MiB"), "max_memory": str("1GiB")}, "", ""},
		{"memory known only after apply", configured, map[string]tftypes.Value{"memory": unknown(tftypes.String), "hotplug_memory": str("1TiB")}, "", ""},
		{"before the provider is configured", protocolServer(t), map[string]tftypes.Value{"memory": str("1TiB")}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := validateOn(tt.server, tt.attrs)
			if tt.at == "" {
				if len(diags) != 0 {
					t.Fatalf("unexpected diagnostics: %v", diagText(diags))
				}
				return
			}
			if len(diags) != 1 || pathString(diags[0].Attribute) != tt.at || !strings.Contains(diags[0].Detail, tt.want) {
				t.Fatalf("want one error on %s saying %q, got %v", tt.at, tt.want, diagText(diags))
			}
		})
	}
}

func TestMaxVCPUsBelowVCPUsFailsThePlan(t *testing.T) {
	n := func(v int) tftypes.Value { return tftypes.NewValue(tftypes.Number, v) }
	for _, tt := range []struct {
		name  string
		attrs map[string]tftypes.Value
		want  string // "" wants no diagnostic
	}{
		{"below vcpus", map[string]tftypes.Value{"vcpus": n(4), "max_vcpus": n(2)}, `max_vcpus "2" is not allowed: 0 (the same as vcpus) or at least vcpus (4), up to 128`},
		{"below the default vcpus", map[string]tftypes.Value{"max_vcpus": n(0)}, ""},
		{"equal to vcpus", map[string]tftypes.Value{"vcpus": n(2), "max_vcpus": n(2)}, ""},
		{"vcpus known only after apply", map[string]tftypes.Value{"vcpus": unknown(tftypes.Number), "max_vcpus": n(2)}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			diags := validate(t, tt.attrs)
			if tt.want == "" {
				if len(diags) != 0 {
					t.Fatalf("unexpected diagnostics: %v", diagText(diags))
				}
				return
			}
			if len(diags) != 1 || pathString(diags[0].Attribute) != "max_vcpus" || !strings.Contains(diags[0].Detail, tt.want) {
				t.Fatalf("want one error on max_vcpus saying %q, got %v", tt.want, diagText(diags))
			}
		})
	}
}

func TestMemoryAboveMaxMemoryFailsBeforeTheProviderIsConfigured(t *testing.T) {
	diags := validate(t, map[string]tftypes.Value{"memory": str("1GiB"), "max_memory": str("512MiB")})
	if len(diags) != 1 || pathString(diags[0].Attribute) != "max_memory" || !strings.Contains(diags[0].Detail, `max_memory "512MiB" is not allowed: at least memory (1GiB)`) {
		t.Fatalf("want one error on max_memory, got %v", diagText(diags))
	}
}
