package provider

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// The acceptance tests run Terraform against the provider in process and boot real VMs under
// QEMU TCG, one at a time, each test holding a machine-wide VM slot. Nothing is downloaded: the
// image comes from a registry on 127.0.0.1.

var accProviders = map[string]func() (tfprotov6.ProviderServer, error){
	"hypeman": providerserver.NewProtocol6WithError(New("test")()),
}

// accEnv is the host side of an acceptance test: a fresh data_dir, the test kernel, and the
// busybox test image in a loopback registry.
type accEnv struct {
	dataDir string
	kernel  string
	modules string
	image   string
}

// requireAcc skips unless TF_ACC is set, as resource.Test would, before any setup is done, and
// unless Terraform is there; in CI both are failures. Under -short it skips, in CI too.
func requireAcc(t *testing.T) {
	t.Helper()
	testutil.SkipShort(t, "Terraform (an acceptance test)")
	testutil.Require(t, os.Getenv("TF_ACC") != "", "acceptance test: run with TF_ACC=1 TF_ACC_TERRAFORM_PATH=$(command -v terraform)")
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		_, err := os.Stat(p)
		testutil.Require(t, err == nil, "terraform is not at TF_ACC_TERRAFORM_PATH="+p)
	} else {
		testutil.RequireTool(t, "terraform")
	}
	t.Setenv("CHECKPOINT_DISABLE", "1")
}

// newAccEnv prepares everything a test that boots VMs needs; it skips (fails in CI) when a tool
// or the kernel is missing.
func newAccEnv(t *testing.T) *accEnv {
	t.Helper()
	requireAcc(t)
	testutil.RequireTool(t, "qemu-system-x86_64")
	testutil.RequireTool(t, "mkfs.erofs")
	testutil.RequireTool(t, "mkfs.ext4")
	testutil.VMSlot(t)
	kernel, modules := testutil.Kernel(t)
	ref := testutil.Registry(t) + "/test/busybox:latest"
	testutil.Push(t, ref, testutil.BusyboxImage(t))
	env := &accEnv{dataDir: testutil.ShortTempDir(t), kernel: kernel, modules: modules, image: ref}
	t.Cleanup(func() { env.killVMMs(t) })
	return env
}

// providerBlock configures the provider for this environment; extra is added inside the block.
func (e *accEnv) providerBlock(extra ...string) string {
	return fmt.Sprintf(`
provider "hypeman" {
  data_dir       = %q
  hypervisor     = "qemu"
  accelerator    = "tcg"
  kernel         = %q
  kernel_modules = %q
  busybox        = %q
%s}
`, e.dataDir, e.kernel, e.modules, ociimage.BusyboxPath, strings.Join(extra, ""))
}

// counterProgram prints "<GREETING> count=N" once a second, so tests can tell a resumed guest
// (the count goes on) from a rebooted one (it starts at 0 again) and see the env it got.
var counterProgram = []string{"/bin/sh", "-c", `i=0; while true; do echo "$GREETING count=$i"; i=$((i+1)); sleep 1; done`}

var countRE = regexp.MustCompile(`(\S+) count=(\d+)`)

// instanceDir is where the manager keeps an instance in this environment.
func (e *accEnv) instanceDir(id string) string { return filepath.Join(e.dataDir, "guests", id) }

// vmmPIDs lists the live processes whose command line mentions dir (the VMM of that instance).
func vmmPIDs(dir string) []int { return testutil.ProcessesMentioning(dir) }

func (e *accEnv) killVMMs(t *testing.T) {
	for _, pid := range vmmPIDs(e.dataDir) {
		t.Logf("killing leftover VMM %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// console reads an instance's console log, with CRLF made LF.
func console(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read console log: %v", err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// counts returns the greeting and count of every counter line in s, in order.
func counts(s string) (greetings []string, values []int) {
	for _, m := range countRE.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[2])
		greetings, values = append(greetings, m[1]), append(values, n)
	}
	return greetings, values
}

// waitConsole polls the console log until cond holds on the part after offset.
func waitConsole(t *testing.T, path string, offset int, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := console(t, path)
		if offset <= len(c) && cond(c[offset:]) {
			return c[offset:]
		}
		if time.Now().After(deadline) {
			tail := c
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			t.Fatalf("console never showed %s; it ends with:\n%s", what, tail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stateAttr reads one attribute of a resource from a Terraform state.
func stateAttr(s *terraform.State, addr, name string) (string, error) {
	rs, ok := s.RootModule().Resources[addr]
	if !ok {
		return "", fmt.Errorf("%s is not in the state", addr)
	}
	v, ok := rs.Primary.Attributes[name]
	if !ok {
		return "", fmt.Errorf("%s has no %s", addr, name)
	}
	return v, nil
}

// startedMarkers counts the program starts in a console, i.e. boots that reached the program.
func startedMarkers(c string) int { return strings.Count(c, system.MarkerStarted) }
