package instances

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/host"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm/builtin"
	"github.com/hypeman/terraform-provider-hypeman/internal/testutil"
)

func TestTheLongestDataDirKeepsEverySocketWithinSunPath(t *testing.T) {
	drivers := builtin.Drivers()
	limit := MaxDataDirLen(drivers)
	longest := "/" + strings.Repeat("d", limit-1)
	for _, d := range drivers {
		sock := longest + "/guests/" + strings.Repeat("U", 26) + "/" + d.SocketName()
		if len(sock+".lock") > maxSocketPath {
			t.Errorf("%s: %s is %d bytes with .lock, more than %d", d.Name(), sock, len(sock)+5, maxSocketPath)
		}
	}
	if err := ValidateDataDir(longest, drivers); err != nil {
		t.Errorf("a data_dir of %d bytes: %v", len(longest), err)
	}
	if !strings.Contains(DataDirRule(drivers), "at most "+strconv.Itoa(limit)+" bytes") {
		t.Errorf("the rule does not state the limit %d: %s", limit, DataDirRule(drivers))
	}
}

func TestBadDataDirsAreRefusedSayingWhatIsAllowed(t *testing.T) {
	drivers := builtin.Drivers()
	limit := MaxDataDirLen(drivers)
	for _, tc := range []struct {
		name, dir string
		want      []string
	}{
		{"empty", "", []string{`data_dir ""`, "an absolute path", "leave data_dir out for the default /var/lib/hypeman"}},
		{"relative", "hypeman", []string{`data_dir "hypeman"`, "an absolute path"}},
		{"NUL byte", "/var/lib/hy\x00", []string{`data_dir "/var/lib/hy\x00"`, "an absolute path"}},
		{"one byte too long", "/" + strings.Repeat("d", limit), []string{"more than the " + strconv.Itoa(limit) + " allowed", "at most 107 bytes", "leave data_dir out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateDataDir(tc.dir, drivers)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}
	if _, err := New(Options{DataDir: "/" + strings.Repeat("d", limit), Drivers: drivers}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a data_dir too long: %v", err)
	}
}

func TestDataDirMustBeADirectoryOrMissing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{dir, filepath.Join(dir, "not-yet")} {
		if err := CheckDataDir(ctx, host.Local{}, ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for p, want := range map[string]string{
		file:                       `data_dir "` + file + `" is a file on the host, not a directory`,
		filepath.Join(file, "sub"): `data_dir "` + filepath.Join(file, "sub") + `" cannot be used`,
	} {
		err := CheckDataDir(ctx, host.Local{}, p)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "allowed: a directory") {
			t.Errorf("%s: error %v, want ErrInvalidConfig saying %q and what is allowed", p, err, want)
		}
	}
}

func TestMemTotalIsReadFromMeminfo(t *testing.T) {
	n, err := memTotal([]byte("MemFree:  100 kB\nMemTotal:       24683584 kB\nSwapTotal: 0 kB\n"))
	if err != nil || n != 24683584*units.KiB {
		t.Errorf("memTotal = %d, %v", n, err)
	}
	if _, err := memTotal([]byte("MemFree: 100 kB\n")); err == nil {
		t.Error("meminfo without MemTotal was read")
	}
}

func TestMemoryBeyondTheHostsIsRefusedNamingTheField(t *testing.T) {
	m, err := New(Options{DataDir: testutil.ShortTempDir(t), Drivers: builtin.Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	total, err := m.HostMemory(ctx)
	if err != nil || total < MinMemory {
		t.Fatalf("HostMemory = %d, %v", total, err)
	}
	if err := m.CheckMemoryFits(ctx, MinMemory, 0); err != nil {
		t.Errorf("the smallest guest: %v", err)
	}
	var fe *FieldError
	err = m.CheckMemoryFits(ctx, total+units.GiB, 0)
	if !errors.As(err, &fe) || fe.Field != "memory" || !strings.Contains(err.Error(), "at most the host's") {
		t.Errorf("memory past the host's: %v", err)
	}
	err = m.CheckMemoryFits(ctx, MinMemory, total)
	if !errors.As(err, &fe) || fe.Field != "hotplug_memory" || !strings.Contains(err.Error(), "with memory 128MiB") {
		t.Errorf("hotplug memory past the host's: %v", err)
	}
}
