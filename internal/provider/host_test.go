package provider

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// sshBlockOf is an ssh block with every setting null but those given.
func sshBlockOf(set func(*sshModel)) *sshModel {
	m := &sshModel{}
	set(m)
	return m
}

func TestHostComesFromConfigThenEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		host     types.String
		ssh      *sshModel
		env      map[string]string
		wantHost string
		wantSSH  *host.SSHConfig
	}{
		{"nothing set is this machine", types.StringNull(), nil, nil, "", nil},
		{"unix:// is this machine", types.StringValue("unix://"), nil, nil, "", nil},
		{"HYPEMAN_HOST names an SSH host", types.StringNull(), nil, map[string]string{"HYPEMAN_HOST": "ssh://root@10.0.0.5"},
			"ssh://root@10.0.0.5", &host.SSHConfig{Address: "ssh://root@10.0.0.5"}},
		{"the configuration wins over HYPEMAN_HOST", types.StringValue(""), nil, map[string]string{"HYPEMAN_HOST": "ssh://10.0.0.5"}, "", nil},
		{"the ssh block fills the connection settings", types.StringValue("ssh://10.0.0.5:2222"), sshBlockOf(func(m *sshModel) {
			m.User, m.PrivateKeyFile, m.KnownHostsFile = types.StringValue("ops"), types.StringValue("~/.ssh/hm"), types.StringValue("/etc/hm/known_hosts")
			m.SSHConfigFile, m.KeepAlive, m.UseAgent = types.StringValue("none"), types.StringValue("1m"), types.BoolValue(false)
		}), nil, "ssh://10.0.0.5:2222", &host.SSHConfig{
			Address: "ssh://10.0.0.5:2222", User: "ops", PrivateKeyFile: "~/.ssh/hm", KnownHostsFile: "/etc/hm/known_hosts",
			SSHConfigFile: "none", KeepAlive: time.Minute, DisableAgent: true,
		}},
		{"keepalive 0s turns keepalives off", types.StringValue("ssh://h"), sshBlockOf(func(m *sshModel) { m.KeepAlive = types.StringValue("0s") }),
			nil, "ssh://h", &host.SSHConfig{Address: "ssh://h", KeepAlive: -1}},
		{"a pinned key and no host key check pass through", types.StringValue("ssh://h"), sshBlockOf(func(m *sshModel) {
			m.HostKey, m.InsecureIgnoreHostKey, m.PrivateKey = types.StringValue("ssh-ed25519 AAAA"), types.BoolValue(true), types.StringValue("PEM")
		}), nil, "ssh://h", &host.SSHConfig{Address: "ssh://h", HostKey: "ssh-ed25519 AAAA", InsecureIgnoreHostKey: true, PrivateKey: "PEM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := nullProviderModel()
			cfg.Host, cfg.SSH = tt.host, tt.ssh
			s, diags := resolveSettings(cfg, func(k string) string { return tt.env[k] })
			if len(diags) != 0 {
				t.Fatal(diags)
			}
			if s.Host != tt.wantHost || !reflect.DeepEqual(s.SSH, tt.wantSSH) {
				t.Errorf("host %q, ssh %+v\nwant %q, %+v", s.Host, s.SSH, tt.wantHost, tt.wantSSH)
			}
		})
	}
}

func TestBadHostSettingsAreRejected(t *testing.T) {
	tests := []struct {
		name string
		host types.String
		ssh  *sshModel
		env  map[string]string
		at   string
		want []string
	}{
		{"a scheme other than ssh", types.StringValue("http://10.0.0.5"), nil, nil, "host",
			[]string{`host "http://10.0.0.5"`, `"ssh://[user@]host[:port]"`, `"unix://"`}},
		{"a bad HYPEMAN_HOST names the variable", types.StringNull(), nil, map[string]string{"HYPEMAN_HOST": "ssh://"}, "host",
			[]string{`host "ssh://" names no host`, "HYPEMAN_HOST"}},
		{"an ssh block with this machine", types.StringNull(), sshBlockOf(func(m *sshModel) { m.User = types.StringValue("root") }), nil, "ssh",
			[]string{"an ssh block needs an SSH host", `host ""`, "remove the ssh block"}},
		{"a keepalive below a second", types.StringValue("ssh://h"), sshBlockOf(func(m *sshModel) { m.KeepAlive = types.StringValue("500ms") }), nil,
			`ssh.keepalive`, []string{`ssh keepalive "500ms" is not allowed`, "at least 1s", `"0s"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := nullProviderModel()
			cfg.Host, cfg.SSH = tt.host, tt.ssh
			_, diags := resolveSettings(cfg, func(k string) string { return tt.env[k] })
			if diags.ErrorsCount() != 1 {
				t.Fatalf("want one error, got %v", diags)
			}
			d := diags.Errors()[0]
			if wp, ok := d.(diag.DiagnosticWithPath); !ok || wp.Path().String() != tt.at {
				t.Errorf("error %v is not at %s", d, tt.at)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Detail(), w) {
					t.Errorf("detail does not mention %q: %s", w, d.Detail())
				}
			}
		})
	}
}

func TestUseAgentWithoutAnAgentWarns(t *testing.T) {
	cfg := nullProviderModel()
	cfg.Host, cfg.SSH = types.StringValue("ssh://h"), sshBlockOf(func(m *sshModel) { m.UseAgent = types.BoolValue(true) })
	_, diags := resolveSettings(cfg, func(string) string { return "" })
	if diags.HasError() || diags.WarningsCount() != 1 || !strings.Contains(diags.Warnings()[0].Detail(), "SSH_AUTH_SOCK is not set") {
		t.Fatalf("want one warning about SSH_AUTH_SOCK, got %v", diags)
	}
}

func TestInsecureIgnoreHostKeyConnectsWithAWarning(t *testing.T) {
	d := testutil.StartSSHD(t)
	h, release, diags := connectHost(context.Background(), d.URL(), &host.SSHConfig{
		Address: d.URL(), PrivateKeyFile: d.ClientKeyFile, KnownHostsFile: emptyKnownHosts(t),
		InsecureIgnoreHostKey: true, SSHConfigFile: "none", DisableAgent: true,
	})
	if diags.HasError() {
		t.Fatal(diags)
	}
	defer release()
	if _, err := h.Stat(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	if diags.WarningsCount() != 1 || !strings.Contains(diags.Warnings()[0].Detail(), "insecure_ignore_host_key is set") {
		t.Errorf("want one warning about insecure_ignore_host_key, got %v", diags)
	}
}

// emptyKnownHosts is a known_hosts file that lists no key.
func emptyKnownHosts(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestReconfigureKeepsOneSSHConnection configures one provider again and again, as a process
// serving several Terraform runs does: an unchanged host keeps its one connection, and a changed
// one replaces it instead of adding to it.
func TestReconfigureKeepsOneSSHConnection(t *testing.T) {
	d := testutil.StartSSHD(t)
	s := protocolServer(t)
	schema, err := s.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	typ := schema.Provider.ValueType().(tftypes.Object)
	sshType := typ.AttributeTypes["ssh"].(tftypes.Object)
	dataDir := testutil.ShortTempDir(t)
	configure := func(keepalive string) {
		t.Helper()
		config := object(typ, map[string]tftypes.Value{
			"host": str(d.URL()), "data_dir": str(dataDir),
			"ssh": object(sshType, map[string]tftypes.Value{
				"private_key_file": str(d.ClientKeyFile), "known_hosts_file": str(d.KnownHostsFile),
				"use_agent": tftypes.NewValue(tftypes.Bool, false), "ssh_config_file": str("none"), "keepalive": str(keepalive),
			}),
		})
		resp, err := s.ConfigureProvider(context.Background(), &tfprotov6.ConfigureProviderRequest{Config: dynamic(t, typ, config)})
		if err != nil {
			t.Fatal(err)
		}
		for _, diag := range resp.Diagnostics {
			if diag.Severity == tfprotov6.DiagnosticSeverityError {
				t.Fatalf("configure: %s: %s", diag.Summary, diag.Detail)
			}
		}
	}
	logins := func() int { return strings.Count(d.Log(), "Accepted publickey") }

	configure("15s")
	oneConnection := len(d.ConnectionPIDs())
	configure("15s")
	configure("15s")
	if n := logins(); n != 1 {
		t.Errorf("%d logins for three configurations of one host, want 1", n)
	}
	if n := len(d.ConnectionPIDs()); n != oneConnection {
		t.Errorf("%d sshd connection processes after reconfiguring, %d after the first configuration", n, oneConnection)
	}

	// Other settings make another connection; the one before is let go.
	configure("30s")
	if n := logins(); n != 2 {
		t.Errorf("%d logins after a settings change, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(d.ConnectionPIDs()) != oneConnection && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(d.ConnectionPIDs()); n != oneConnection {
		t.Errorf("%d sshd connection processes after a settings change, want the %d of one connection", n, oneConnection)
	}
}
