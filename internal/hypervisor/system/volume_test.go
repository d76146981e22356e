package system

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Volumes on real guests: the init mounts each ext4 disk at its path inside the root, or fails
// the boot naming it.

const (
	serialWritable = "01JVOLWRITABLE000001"
	serialReadOnly = "01JVOLREADONLY000002"
)

func TestGuestMountsVolumes(t *testing.T) {
	a, rootfs := prepareGuest(t)
	newGuest := func(t *testing.T, cfg guestConfig, extra ...extraDisk) guestDisks {
		d := t.TempDir()
		return guestDisks{rootfs: rootfs, overlay: newOverlay(t, d), config: buildConfigDisk(t, d, cfg), extra: extra}
	}

	t.Run("mounts a writable and a read-only volume, and the writes reach the host cleanly", func(t *testing.T) {
		d := t.TempDir()
		rw := newExt4(t, filepath.Join(d, "rw.raw"), 32<<20, map[string]string{"seed.txt": "seeded writable\n"})
		ro := newExt4(t, filepath.Join(d, "ro.raw"), 32<<20, map[string]string{"sub/seed.txt": "seeded read-only\n"})
		script := `cat /var/lib/data/seed.txt /srv/shared/sub/seed.txt
echo "written by the guest" >/var/lib/data/out.txt && echo "write rw: ok"
if echo x >/srv/shared/out.txt; then echo "write ro: ok"; else echo "write ro: refused"; fi`
		cfg := guestConfig{argv: []string{"sh", "-c", script}, volumes: []guestVolume{
			{serial: serialWritable, path: "/var/lib/data"},
			{serial: serialReadOnly, path: "/srv/shared", readonly: true},
		}}
		console := bootGuest(t, a, newGuest(t, cfg, extraDisk{rw, serialWritable, false}, extraDisk{ro, serialReadOnly, true}), nil)
		for _, want := range []string{"seeded writable\nseeded read-only\n", "write rw: ok\n", "Read-only file system", "write ro: refused\n"} {
			if !strings.Contains(console, want) {
				t.Errorf("no %q on the console:\n%s", want, console)
			}
		}
		if code := exitCode(t, console); code != 0 {
			t.Errorf("exit code = %d, want 0:\n%s", code, console)
		}
		if got := debugfsCat(t, rw, "/out.txt"); got != "written by the guest\n" {
			t.Errorf("the host reads %q from the writable volume, want the guest's line", got)
		}
		wantClean(t, rw)
		wantClean(t, ro)
		if got := debugfsCat(t, ro, "/out.txt"); got != "" {
			t.Errorf("the read-only volume holds /out.txt %q", got)
		}
	})

	t.Run("a process holding a volume's file open at the program's end does not leave it dirty", func(t *testing.T) {
		rw := newExt4(t, filepath.Join(t.TempDir(), "rw.raw"), 32<<20, nil)
		// The background writer outlives the program; the init kills it, then unmounts.
		script := `(while :; do echo busy; sleep 0.01; done) >/data/busy.log & sleep 1; echo left a writer`
		cfg := guestConfig{argv: []string{"sh", "-c", script}, volumes: []guestVolume{{serial: serialWritable, path: "/data"}}}
		console := bootGuest(t, a, newGuest(t, cfg, extraDisk{rw, serialWritable, false}), nil)
		if !strings.Contains(console, "left a writer\n"+MarkerExited+"0\n") {
			t.Fatalf("the program did not run as planned:\n%s", console)
		}
		if strings.Contains(console, "cannot unmount") {
			t.Errorf("the init could not unmount the volume:\n%s", console)
		}
		wantClean(t, rw)
		if got := debugfsCat(t, rw, "/busy.log"); !strings.HasPrefix(got, "busy\n") {
			t.Errorf("the writer's file holds %q, want its lines", got)
		}
	})

	t.Run("a mount path with spaces, quotes, $() and a newline is data", func(t *testing.T) {
		vol := newExt4(t, filepath.Join(t.TempDir(), "v.raw"), 32<<20, map[string]string{"seed.txt": "hostile path mounted\n"})
		at := "/srv/two words/'single' \"double\" $(poweroff) `false` ${HOME}\nsecond line"
		cfg := guestConfig{argv: []string{"cat", at + "/seed.txt"}, volumes: []guestVolume{{serial: serialWritable, path: at, readonly: true}}}
		console := bootGuest(t, a, newGuest(t, cfg, extraDisk{vol, serialWritable, true}), nil)
		if !strings.Contains(console, MarkerStarted+"\nhostile path mounted\n"+MarkerExited+"0\n") {
			t.Errorf("the program did not read the volume at its exact path:\n%s", console)
		}
	})

	t.Run("a mount path through a link lands inside the root", func(t *testing.T) {
		d := t.TempDir()
		vol := newExt4(t, filepath.Join(d, "v.raw"), 32<<20, map[string]string{"seed.txt": "through the link\n"})
		// /srv/up climbs past the root to /mnt/escape: inside the root, never the init's /mnt.
		cfg := guestConfig{argv: []string{"cat", "/mnt/escape/inner/seed.txt"}, volumes: []guestVolume{{serial: serialWritable, path: "/srv/up/inner"}}}
		console := bootGuest(t, a, newGuest(t, cfg, extraDisk{vol, serialWritable, false}), nil)
		if !strings.Contains(console, MarkerStarted+"\nthrough the link\n"+MarkerExited+"0\n") {
			t.Errorf("the program did not read the volume at /mnt/escape/inner inside the root:\n%s", console)
		}
	})

	zeros := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "zeros.raw")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 8<<20); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ext4 := func(t *testing.T) string { return newExt4(t, filepath.Join(t.TempDir(), "v.raw"), 32<<20, nil) }
	// An ext4 image whose superblock is destroyed but for its magic: the kernel refuses it.
	broken := func(t *testing.T) string {
		p := ext4(t)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		if _, err := f.WriteAt(make([]byte, 56), 1024); err != nil {
			t.Fatal(err)
		}
		return p
	}
	failures := []struct {
		name    string
		path    string
		disk    func(t *testing.T) string // nil: no disk with the serial
		diskRO  bool
		why     string
		atLeast time.Duration
	}{
		{name: "a regular file at the mount path fails the boot", path: "/etc/regular", disk: ext4, why: "not a directory"},
		{name: "a missing disk fails the boot after the 10 s wait", path: "/data", why: "no disk with that serial", atLeast: 10 * time.Second},
		{name: "a disk that is not ext4 fails the boot", path: "/data", disk: zeros, why: "holds no ext4 filesystem"},
		{name: "a read-only disk for a writable volume fails the boot", path: "/data", disk: ext4, diskRO: true, why: "is read-only but the volume is writable"},
		{name: "a relative mount path fails the boot", path: "data", disk: ext4, why: "not an absolute path"},
		{name: "the root itself as mount path fails the boot", path: "/srv/..", disk: ext4, why: "that is the root itself"},
		{name: "a disk the kernel cannot mount fails the boot with its reason", path: "/data", disk: broken, why: "mount failed: "},
	}
	var baseline time.Duration
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			cfg := guestConfig{argv: []string{"echo", "must not run"}, volumes: []guestVolume{{serial: serialWritable, path: tt.path}}}
			var extra []extraDisk
			if tt.disk != nil {
				extra = append(extra, extraDisk{tt.disk(t), serialWritable, tt.diskRO})
			}
			started := time.Now()
			console := bootGuest(t, a, newGuest(t, cfg, extra...), nil)
			took := time.Since(started)
			want := MarkerError + "cannot mount volume " + serialWritable + " at " + tt.path + ": "
			line := ""
			if i := strings.Index(console, want); i >= 0 {
				line, _, _ = strings.Cut(console[i:], "\n")
			}
			t.Logf("console: %s", line)
			if !strings.Contains(line, tt.why) {
				t.Errorf("no %q line saying %q on the console:\n%s", want, tt.why, console)
			}
			if strings.Contains(line, "/mnt/") {
				t.Errorf("the error names a path of the init's own namespace: %s", line)
			}
			if strings.Contains(console, MarkerStarted) || strings.Contains(console, "must not run") {
				t.Errorf("the program ran:\n%s", console)
			}
			if took < tt.atLeast {
				t.Errorf("the boot failed after %v, before the %v wait for the disk", took, tt.atLeast)
			}
			// The wait for a disk adds its 10 s to a failed boot without one (the first row's), no more.
			if tt.atLeast == 0 && baseline == 0 {
				baseline = took
			}
			if limit := baseline + tt.atLeast + 4*time.Second; tt.atLeast > 0 && took > limit {
				t.Errorf("the boot failed after %v, more than %v", took, limit)
			}
		})
	}
}

// debugfsCat is the content of name inside the ext4 image, read on the host without mounting it.
func debugfsCat(t *testing.T, image, name string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+name, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", name, err)
	}
	return string(out)
}

// wantClean checks that the ext4 image was unmounted before the guest powered off: no journal
// left to replay (which e2fsck -n would skip without complaint) and nothing for e2fsck to fix.
func wantClean(t *testing.T, image string) {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", image).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v\n%s", filepath.Base(image), err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Filesystem features:") && strings.Contains(line, "needs_recovery") {
			t.Errorf("%s was not unmounted: its journal needs recovery (%s)", filepath.Base(image), line)
		}
	}
	if out, err := exec.Command("e2fsck", "-fn", image).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s after the guest powered off: %v\n%s", filepath.Base(image), err, out)
	}
}
