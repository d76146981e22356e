package pluginlogs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"

	"github.com/hypeman/terraform-provider-hypeman/internal/provider"
)

// childEnv makes the test binary serve one request of the real provider as the plugin does, and
// exit: "quiet" applies QuietUnlessAsked first, as main does; "sdk" leaves the SDK's defaults.
const childEnv = "PLUGINLOGS_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(serveOneRequest(mode))
	}
	os.Exit(m.Run())
}

func serveOneRequest(mode string) int {
	if mode == "quiet" {
		QuietUnlessAsked("hypeman")
	}
	srv := tf6server.New("registry.terraform.io/hypeman/hypeman", providerserver.NewProtocol6(provider.New("test")())())
	if _, err := srv.GetProviderSchema(context.Background(), nil); err != nil {
		_, _ = fmt.Fprintln(os.Stdout, "GetProviderSchema:", err)
		return 1
	}
	return 0
}

// logLines runs one request in a child with only the given TF_LOG* variables set and counts the
// log lines it wrote to stderr (where Terraform reads them), by module (sdk.proto, sdk.framework…).
func logLines(t *testing.T, mode string, vars ...string) map[string]int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TF_LOG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append(vars, childEnv+"="+mode)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("child %s %v: %v\n%s\n%s", mode, vars, err, out, stderr.String())
	}
	lines := map[string]int{}
	sc := bufio.NewScanner(&stderr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var entry struct {
			Module string `json:"@module"`
		}
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("child %s %v wrote a line that is not a JSON log entry: %q", mode, vars, sc.Text())
		}
		lines[entry.Module]++
	}
	return lines
}

func TestSDKLogsOnlyWhenTerraformKeepsThem(t *testing.T) {
	all := logLines(t, "sdk")
	t.Logf("one GetProviderSchema request, the SDK's defaults: log lines by module %v", all)
	if all["sdk.proto"] == 0 || all["sdk.framework"] == 0 {
		t.Fatalf("the SDK's own defaults logged %v; want lines of sdk.proto and sdk.framework to compare with", all)
	}
	for _, tc := range []struct {
		vars []string
		want map[string]int
	}{
		{nil, map[string]int{}},
		{[]string{"TF_LOG_PATH=" + t.TempDir() + "/terraform.log"}, map[string]int{}}, // Terraform logs nothing without a level
		{[]string{"TF_LOG=off"}, map[string]int{}},
		{[]string{"TF_LOG=trace", "TF_LOG_PROVIDER=off"}, map[string]int{}},
		{[]string{"TF_LOG=trace"}, all},
		{[]string{"TF_LOG=ERROR"}, all}, // Terraform filters by level; the plugin writes what the SDK would
		{[]string{"TF_LOG=json"}, all},
		{[]string{"TF_LOG_PROVIDER=trace"}, all},
		{[]string{"TF_LOG_PROVIDER=debug", "TF_LOG_PATH=" + t.TempDir() + "/terraform.log"}, all},
		{[]string{"TF_LOG_PROVIDER=trace", "TF_LOG_SDK_PROTO=off"}, without(all, "sdk.proto")}, // the user's own choice stays
	} {
		if got := logLines(t, "quiet", tc.vars...); !maps.Equal(got, tc.want) {
			t.Errorf("with %v: log lines by module %v, want %v", tc.vars, got, tc.want)
		}
	}
}

func without(m map[string]int, module string) map[string]int {
	out := maps.Clone(m)
	delete(out, module)
	return out
}

func TestQuietLogsSetsOnlyWhatTheUserLeftUnset(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want map[string]string
	}{
		{map[string]string{}, map[string]string{"TF_LOG_SDK": "off", "TF_LOG_PROVIDER_HYPEMAN": "off"}},
		{map[string]string{"TF_LOG": ""}, map[string]string{"TF_LOG_SDK": "off", "TF_LOG_PROVIDER_HYPEMAN": "off"}},
		{map[string]string{"TF_LOG_SDK": "debug"}, map[string]string{"TF_LOG_PROVIDER_HYPEMAN": "off"}},
		{map[string]string{"TF_LOG_CORE": "trace"}, map[string]string{"TF_LOG_SDK": "off", "TF_LOG_PROVIDER_HYPEMAN": "off"}},
		{map[string]string{"TF_LOG": "OFF"}, map[string]string{"TF_LOG_SDK": "off", "TF_LOG_PROVIDER_HYPEMAN": "off"}},
		{map[string]string{"TF_LOG": "info"}, nil},
		{map[string]string{"TF_LOG": "nonsense"}, nil}, // Terraform reads it as trace
		{map[string]string{"TF_LOG_PROVIDER": "warn", "TF_LOG": "off"}, nil},
	} {
		lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		if got := quietLogs("hypeman", lookup); !maps.Equal(got, tc.want) {
			t.Errorf("with %v: set %v, want %v", tc.env, got, tc.want)
		}
	}
}
