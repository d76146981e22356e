// Package pluginlogs decides which logs the plugin writes when Terraform runs it.
package pluginlogs

import (
	"os"
	"strings"
)

// Terraform reads a provider's logs from the plugin's stderr at the level TF_LOG_PROVIDER sets,
// or else TF_LOG; with neither set (or set to "off") it parses every line and drops it. The SDK
// logs at trace unless TF_LOG_SDK says otherwise: two hundred lines or more per resource and
// plan, a third of a plan's CPU, for no one. So when Terraform would drop the logs, the SDK's
// (TF_LOG_SDK, which its proto and framework subsystems follow) and the provider's own
// (TF_LOG_PROVIDER_<TYPE>) default to off. A variable the user set is never changed, and any
// TF_LOG or TF_LOG_PROVIDER level brings every line back. TF_LOG_PATH only says where Terraform
// writes what it keeps: on its own it keeps nothing, and neither does this.

// QuietUnlessAsked applies quietLogs to this process's environment, where the SDK reads it on
// every request. providerType is the provider's type name (its address's last part).
func QuietUnlessAsked(providerType string) {
	for k, v := range quietLogs(providerType, os.LookupEnv) {
		_ = os.Setenv(k, v)
	}
}

// quietLogs returns the variables to set so that the plugin writes no log Terraform would drop.
func quietLogs(providerType string, lookup func(string) (string, bool)) map[string]string {
	if terraformKeepsProviderLogs(lookup) {
		return nil
	}
	out := map[string]string{}
	for _, name := range []string{"TF_LOG_SDK", "TF_LOG_PROVIDER_" + strings.ToUpper(strings.ReplaceAll(providerType, "-", "_"))} {
		if _, set := lookup(name); !set {
			out[name] = "off"
		}
	}
	return out
}

// terraformKeepsProviderLogs is Terraform's own rule for a provider's log level: TF_LOG_PROVIDER,
// else TF_LOG; empty is off, "off" is off, and anything else (a level, "json", a typo) keeps them.
func terraformKeepsProviderLogs(lookup func(string) (string, bool)) bool {
	level, _ := lookup("TF_LOG_PROVIDER")
	if level == "" {
		level, _ = lookup("TF_LOG")
	}
	return level != "" && !strings.EqualFold(level, "off")
}
