// Package internal holds no code of its own: its test checks, over the whole module, that test
// code stays out of what is released.
package internal

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

// testOnly are the module's packages that exist for tests: fixtures, the Cloud Hypervisor
// stand-in and its binary. Paths are relative to the module.
var testOnly = []string{
	"internal/testutil",
	"internal/hypervisor/network/netnstest",
	"internal/hypervisor/vmm/cloudhypervisor/chstandin",
	"internal/hypervisor/vmm/cloudhypervisor/chstandin/cmd/cloud-hypervisor",
}

// testingStd are the standard packages only tests should link.
var testingStd = []string{"testing", "net/http/httptest"}

// binaries are the programs built from this module for users, each with the imports of test
// packages it is allowed through a dependency it cannot change.
var binaries = []struct {
	name, pkg string
	allowed   map[string]string // "importer imports" -> why
}{
	{"the provider", ".", map[string]string{
		"github.com/hashicorp/go-plugin imports testing": "go-plugin keeps its test helpers (testing.go) in the package every Terraform provider links",
	}},
	{"the demo image tool (make demo)", "./internal/tools/demoimage", nil},
}

type listed struct {
	ImportPath string
	Imports    []string
}

// goTool runs the go tool at the module root and returns its output.
func goTool(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testutil.RequireTool(t, "go"), args...)
	cmd.Dir = ".." // the module root, one up from this package
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// goList lists packages with their imports (those of non-test files).
func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(goTool(t, append([]string{"list", "-json=ImportPath,Imports"}, args...)...)))
	var pkgs []listed
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
}

// testOnlyPaths are the import paths of testOnly.
func testOnlyPaths(t *testing.T) map[string]bool {
	t.Helper()
	mod := strings.TrimSpace(string(goTool(t, "list", "-m")))
	paths := map[string]bool{}
	for _, p := range testOnly {
		paths[mod+"/"+p] = true
	}
	return paths
}

func TestNoReleasedPackageImportsTestCode(t *testing.T) {
	isTestOnly := testOnlyPaths(t)
	found := map[string]bool{}
	for _, p := range goList(t, "./...") {
		found[p.ImportPath] = true
		if isTestOnly[p.ImportPath] {
			continue
		}
		for _, imp := range p.Imports {
			if isTestOnly[imp] {
				t.Errorf("%s imports the test-only package %s", p.ImportPath, imp)
			}
		}
	}
	for p := range isTestOnly {
		if !found[p] {
			t.Errorf("the test-only package %s is not in the module: update testOnly", p)
		}
	}
}

func TestReleasedBinariesLinkNoTestCode(t *testing.T) {
	forbidden := testOnlyPaths(t)
	for _, p := range testingStd {
		forbidden[p] = true
	}
	// The check reads what it should: testutil is test code and links testing.
	if !slices.ContainsFunc(goList(t, "-deps", "./internal/testutil"), func(p listed) bool { return p.ImportPath == "testing" }) {
		t.Fatal("go list shows no testing among testutil's dependencies: the check sees nothing")
	}
	for _, bin := range binaries {
		t.Run(bin.pkg, func(t *testing.T) {
			used := map[string]bool{}
			for _, p := range goList(t, "-deps", bin.pkg) {
				for _, imp := range p.Imports {
					if !forbidden[imp] {
						continue
					}
					edge := p.ImportPath + " imports " + imp
					if _, ok := bin.allowed[edge]; ok {
						used[edge] = true
						continue
					}
					t.Errorf("%s links test code: %s", bin.name, edge)
				}
			}
			for edge := range bin.allowed {
				if !used[edge] {
					t.Errorf("%s no longer needs the allowance %q: remove it", bin.name, edge)
				}
			}
		})
	}
}
