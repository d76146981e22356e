package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
)

var _ validator.Bool = insecureAlone{}

// The host is where VMs run: this machine, or one reached over SSH (host = "ssh://…").

// hostForms are the values host accepts, for descriptions.
const hostForms = "`\"ssh://[user@]host[:port]\"` (a host name, an address or a `Host` alias of the ssh config file), " +
	"or `\"\"` / `\"unix://\"` for the machine Terraform runs on"

// onHost qualifies the paths of the provider's settings, for descriptions.
const onHost = "on the host VMs run on (see `host`; over SSH not the machine Terraform runs on)"

// defaultKeepAlive is the host package's keepalive interval, for the documentation.
const defaultKeepAlive = "15s"

// sshModel is the provider's ssh block: how to log in to an SSH host.
type sshModel struct {
	User                  types.String `tfsdk:"user"`
	PrivateKey            types.String `tfsdk:"private_key"`
	PrivateKeyFile        types.String `tfsdk:"private_key_file"`
	KnownHostsFile        types.String `tfsdk:"known_hosts_file"`
	HostKey               types.String `tfsdk:"host_key"`
	InsecureIgnoreHostKey types.Bool   `tfsdk:"insecure_ignore_host_key"`
	UseAgent              types.Bool   `tfsdk:"use_agent"`
	SSHConfigFile         types.String `tfsdk:"ssh_config_file"`
	KeepAlive             types.String `tfsdk:"keepalive"`
}

// unknown names each ssh setting and whether it is unknown at plan time.
func (m *sshModel) unknown() map[string]bool {
	return map[string]bool{
		"user": m.User.IsUnknown(), "private_key": m.PrivateKey.IsUnknown(), "private_key_file": m.PrivateKeyFile.IsUnknown(),
		"known_hosts_file": m.KnownHostsFile.IsUnknown(), "host_key": m.HostKey.IsUnknown(),
		"insecure_ignore_host_key": m.InsecureIgnoreHostKey.IsUnknown(), "use_agent": m.UseAgent.IsUnknown(),
		"ssh_config_file": m.SSHConfigFile.IsUnknown(), "keepalive": m.KeepAlive.IsUnknown(),
	}
}

func hostAttribute() schema.Attribute {
	return schema.StringAttribute{
		MarkdownDescription: "The machine VMs run on: " + hostForms + ". Defaults to `$HYPEMAN_HOST`, else the machine Terraform " +
			"runs on. Over SSH the instances' files and processes live on that host and the paths of the other settings are " +
			"paths there; one SSH connection serves all resources and data sources of the provider. Use one provider alias per " +
			"host; the `ssh` block says how to log in.",
		Optional:   true,
		Validators: []validator.String{validHost()},
	}
}

func validHost() validator.String {
	return checkString{"Invalid Provider Setting", `must be "ssh://[user@]host[:port]", "unix://" or ""`, func(s string) error {
		_, err := host.ParseHostURL(s)
		return err
	}}
}

func sshBlock() schema.Block {
	sshPath := func(name string) path.Expression { return path.MatchRelative().AtParent().AtName(name) }
	return schema.SingleNestedBlock{
		MarkdownDescription: "How to log in to an SSH `host`; only with one. Keys only (no passwords). Every key given here, " +
			"every `IdentityFile` of the ssh config file and every key of the ssh-agent is offered in turn; with none of those, " +
			"`~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa`. Files named here are read on the machine Terraform runs on. The host's " +
			"key is always verified against `known_hosts_file` or `host_key`, unless `insecure_ignore_host_key` is set.",
		Attributes: map[string]schema.Attribute{
			"user": schema.StringAttribute{
				MarkdownDescription: "The user to log in as when `host` names none. Defaults to the ssh config file's `User` for the " +
					"host, else the local user name.",
				Optional:   true,
				Validators: []validator.String{notEmpty("ssh user", "leave user out (or null) for the ssh config file's User, else the local user name")},
			},
			"private_key": schema.StringAttribute{
				MarkdownDescription: "A private key (ed25519, ECDSA or RSA; PEM or OpenSSH format), offered first. Keys encrypted " +
					"with a passphrase are not supported: load them into ssh-agent instead.",
				Optional:  true,
				Sensitive: true,
				Validators: []validator.String{notEmpty("ssh private_key", "leave private_key out (or null) to offer no key of its own"),
					checkString{"Invalid Provider Setting", "must be a PEM or OpenSSH private key", host.CheckPrivateKey}},
			},
			"private_key_file": schema.StringAttribute{
				MarkdownDescription: "A private key file; `~/` is the home directory. Read at each login, so a rotated key is picked up.",
				Optional:            true,
				Validators:          []validator.String{notEmpty("ssh private_key_file", "leave private_key_file out (or null) to name no key file")},
			},
			"known_hosts_file": schema.StringAttribute{
				MarkdownDescription: "The known_hosts file the host's key must be listed in. Defaults to the ssh config file's " +
					"`UserKnownHostsFile`, else `~/.ssh/known_hosts` (and `/etc/ssh/ssh_known_hosts`). Conflicts with `host_key`.",
				Optional: true,
				Validators: []validator.String{stringvalidator.ConflictsWith(sshPath("host_key")),
					notEmpty("ssh known_hosts_file", "leave known_hosts_file out (or null) for the ssh config file's UserKnownHostsFile, else ~/.ssh/known_hosts")},
			},
			"host_key": schema.StringAttribute{
				MarkdownDescription: "Pins the host's key instead of looking it up in known_hosts: a known_hosts line or " +
					"`\"<type> <base64>\"` (such as a line of `ssh-keyscan` output or the host's `/etc/ssh/ssh_host_*_key.pub`), " +
					"one per line when the host has several.",
				Optional: true,
				Validators: []validator.String{notEmpty("ssh host_key", "leave host_key out (or null) to look the key up in known_hosts_file"),
					checkString{"Invalid Provider Setting", "must be a known_hosts line or \"<type> <base64>\"", host.CheckHostKey}},
			},
			"insecure_ignore_host_key": schema.BoolAttribute{
				MarkdownDescription: "Accept whatever key the host presents. Defaults to `false`. With it anyone between Terraform and " +
					"the host can pose as the host and read or change everything the provider sends, so every run warns while it is set. " +
					"Conflicts with `host_key` and `known_hosts_file`.",
				Optional:   true,
				Validators: []validator.Bool{insecureAlone{}},
			},
			"use_agent": schema.BoolAttribute{
				MarkdownDescription: "Offer the keys of the ssh-agent at `$SSH_AUTH_SOCK`. Defaults to `true`, which has no effect when " +
					"`SSH_AUTH_SOCK` is not set.",
				Optional: true,
			},
			"ssh_config_file": schema.StringAttribute{
				MarkdownDescription: "The OpenSSH client configuration read for the host's `HostName`, `User`, `Port`, `IdentityFile`, " +
					"`UserKnownHostsFile` and `ProxyJump`; settings in `host` and in this block win. Defaults to `~/.ssh/config` when " +
					"it exists; `\"none\"` reads no file.",
				Optional:   true,
				Validators: []validator.String{notEmpty("ssh ssh_config_file", `leave ssh_config_file out (or null) for ~/.ssh/config when it exists, or write "none" to read no file`)},
			},
			"keepalive": schema.StringAttribute{
				MarkdownDescription: "How often the connection is checked, as a duration such as `\"30s\"` (at least `1s`). A " +
					"connection that stops answering is closed and the next operation reconnects. Defaults to `" + defaultKeepAlive +
					"`; `\"0s\"` turns the checks off.",
				Optional:   true,
				Validators: []validator.String{validKeepAlive()},
			},
		},
	}
}

func validKeepAlive() validator.String {
	return checkString{"Invalid Provider Setting", "must be a duration of at least 1s, or 0s", func(s string) error {
		_, err := parseKeepAlive(s)
		return err
	}}
}

// parseKeepAlive reads the keepalive setting as the host package's KeepAlive: 0s means off.
func parseKeepAlive(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil || d < 0 || (d > 0 && d < time.Second):
		return 0, fmt.Errorf(`ssh keepalive %q is not allowed: use a duration of at least 1s such as "15s" or "1m", or "0s" to turn keepalives off`, s)
	case d == 0:
		return -1, nil
	}
	return d, nil
}

// resolveHost reads host (else HYPEMAN_HOST) and the ssh block. It returns the host as written
// ("" for this machine) and, for an SSH host, how to reach it.
func resolveHost(cfg providerModel, getenv func(string) string) (string, *host.SSHConfig, diag.Diagnostics) {
	var diags diag.Diagnostics
	addr, fromEnv := cfg.Host.ValueString(), false
	if cfg.Host.IsNull() {
		addr, fromEnv = getenv("HYPEMAN_HOST"), true
	}
	u, err := host.ParseHostURL(addr)
	if err != nil {
		detail := err.Error()
		if fromEnv {
			detail += " (the value comes from HYPEMAN_HOST)"
		}
		diags.AddAttributeError(path.Root("host"), "Invalid Provider Setting", detail)
		return addr, nil, diags
	}
	if u.Kind != host.KindSSH {
		if cfg.SSH != nil {
			diags.AddAttributeError(path.Root("ssh"), "Invalid Provider Setting", fmt.Sprintf(
				"an ssh block needs an SSH host, but host %q is the machine Terraform runs on: set host (or HYPEMAN_HOST) to \"ssh://[user@]host[:port]\", or remove the ssh block", addr))
		}
		return "", nil, diags
	}
	sc := &host.SSHConfig{Address: addr}
	if m := cfg.SSH; m != nil {
		sc.User, sc.PrivateKey, sc.PrivateKeyFile = m.User.ValueString(), m.PrivateKey.ValueString(), m.PrivateKeyFile.ValueString()
		sc.KnownHostsFile, sc.HostKey, sc.InsecureIgnoreHostKey = m.KnownHostsFile.ValueString(), m.HostKey.ValueString(), m.InsecureIgnoreHostKey.ValueBool()
		sc.SSHConfigFile = m.SSHConfigFile.ValueString()
		sc.DisableAgent = !m.UseAgent.IsNull() && !m.UseAgent.ValueBool()
		if m.UseAgent.ValueBool() && getenv("SSH_AUTH_SOCK") == "" {
			diags.AddAttributeWarning(path.Root("ssh").AtName("use_agent"), "No SSH Agent",
				"use_agent is true, but SSH_AUTH_SOCK is not set, so no agent key is offered.")
		}
		if !m.KeepAlive.IsNull() {
			if sc.KeepAlive, err = parseKeepAlive(m.KeepAlive.ValueString()); err != nil {
				diags.AddAttributeError(path.Root("ssh").AtName("keepalive"), "Invalid Provider Setting", err.Error())
			}
		}
	}
	return addr, sc, diags
}

// connectHost returns the host VMs run on and what releases it (nil for this machine). SSH
// warnings become diagnostics; a failed login names what was tried and how to fix it.
func connectHost(ctx context.Context, addr string, sc *host.SSHConfig) (host.Host, func(), diag.Diagnostics) {
	var diags diag.Diagnostics
	if sc == nil {
		return host.Local{}, nil, diags
	}
	cfg := *sc
	// DialSSH calls Warn only before it returns.
	cfg.Warn = func(msg string) { diags.AddWarning("SSH Connection Warning", msg) }
	s, err := host.DialSSH(ctx, cfg)
	if err != nil {
		detail := fmt.Sprintf("Host: %s\nError: %v", addr, err)
		if hint := connectHint(err); hint != "" {
			detail += "\n\n" + hint
		}
		diags.AddAttributeError(path.Root("host"), "Unable to Connect to Host", detail)
		return nil, nil, diags
	}
	return s, func() { _ = s.Close() }, diags
}

// connectHint says where the fix for a refused connection goes in the configuration.
func connectHint(err error) string {
	switch {
	case errors.Is(err, host.ErrHostKeyUnknown):
		return "The host's key is checked against known_hosts_file (default ~/.ssh/known_hosts) or pinned with host_key in the ssh block. " +
			"Before trusting it, compare the fingerprint with the host's own, read on the host itself (ssh-keygen -lf on its /etc/ssh/ssh_host_*_key.pub)."
	case errors.Is(err, host.ErrHostKeyChanged):
		return "Do not trust the new key before confirming on the host itself that it changed."
	case errors.Is(err, host.ErrAuth):
		return "Give a key the host accepts in the ssh block (private_key or private_key_file), through ssh-agent, or as an IdentityFile in the ssh config file."
	}
	return ""
}

// insecureAlone refuses insecure_ignore_host_key = true next to a way of checking the host's key:
// the provider would have to pick one of two contradicting settings.
type insecureAlone struct{}

func (insecureAlone) Description(context.Context) string {
	return "insecure_ignore_host_key = true conflicts with host_key and known_hosts_file"
}

func (v insecureAlone) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (insecureAlone) ValidateBool(ctx context.Context, req validator.BoolRequest, resp *validator.BoolResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() || !req.ConfigValue.ValueBool() {
		return
	}
	for _, other := range []string{"host_key", "known_hosts_file"} {
		var v types.String
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, req.Path.ParentPath().AtName(other), &v)...)
		if v.IsNull() || v.IsUnknown() {
			continue
		}
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Provider Setting", fmt.Sprintf(
			"ssh insecure_ignore_host_key = true is not allowed together with %s: the host's key is either pinned (host_key), "+
				"looked up in a known_hosts file (known_hosts_file) or not checked at all (insecure_ignore_host_key = true); keep one of them", other))
	}
}
