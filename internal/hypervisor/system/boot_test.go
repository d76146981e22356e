package system

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestGuestBoot boots the Debian kernel with the prepared initrd, one guest at a time, and checks
// the boot contract from the console alone.
func TestGuestBoot(t *testing.T) {
	a, rootfs := prepareGuest(t)
	newGuest := func(t *testing.T, cfg guestConfig) guestDisks {
		d := t.TempDir()
		return guestDisks{rootfs: rootfs, overlay: newOverlay(t, d), config: buildConfigDisk(t, d, cfg)}
	}

	t.Run("runs the program with exactly the configured argv, env and workdir", func(t *testing.T) {
		cfg := guestConfig{
			argv: []string{
				"show",
				"two words",
				"trailing newlines\n\n",
				`$(echo no) ` + "`id`" + ` "double" 'single' \back ${HOME}`,
				"a=b",
				"",
				"-n",
				"line1\nline2",
			},
			env: []string{
				"PATH=/opt/tools:/bin",
				`QUOTES='single' "double"`,
				"SUBST=$(poweroff) `poweroff` ${PATH}",
				"EQUALS=a=b=c",
				"NEWLINES=\nfirst\nsecond\n",
				"EMPTY=",
				"SPACES=  padded  ",
			},
			workdir:  "/app",
			hostname: "guest-one",
		}
		console := bootGuest(t, a, newGuest(t, cfg), nil)
		got := parseShown(t, console)
		// Found along the configured PATH, through an absolute link that only resolves in the root.
		if got.argv0 != "/opt/tools/show" {
			t.Errorf("program ran as %q, want /opt/tools/show", got.argv0)
		}
		if !reflect.DeepEqual(got.args, cfg.argv[1:]) {
			t.Errorf("argv[1:] = %q\nwant      %q", got.args, cfg.argv[1:])
		}
		if !sameSet(got.env, cfg.env) {
			t.Errorf("environment = %q\nwant          %q", got.env, cfg.env)
		}
		if got.cwd != "/srv/app" {
			t.Errorf("working directory = %q, want /srv/app (workdir /app is a link to it)", got.cwd)
		}
		if got.hostname != cfg.hostname {
			t.Errorf("hostname = %q, want %q", got.hostname, cfg.hostname)
		}
		if code := exitCode(t, console); code != 0 {
			t.Errorf("exit code = %d, want 0", code)
		}
	})

	t.Run("uses the default PATH and injects no variable", func(t *testing.T) {
		cfg := guestConfig{argv: []string{"show"}, env: []string{"SHOW_EXIT=5"}, workdir: "/srv/new/dir"}
		console := bootGuest(t, a, newGuest(t, cfg), nil)
		got := parseShown(t, console)
		if got.argv0 != "/usr/local/bin/show" {
			t.Errorf("program ran as %q, want /usr/local/bin/show (from the default PATH)", got.argv0)
		}
		if !reflect.DeepEqual(got.env, cfg.env) {
			t.Errorf("environment = %q, want exactly %q", got.env, cfg.env)
		}
		if got.cwd != cfg.workdir {
			t.Errorf("working directory = %q, want %q (created when missing)", got.cwd, cfg.workdir)
		}
		if code := exitCode(t, console); code != 5 {
			t.Errorf("exit code = %d, want the program's 5", code)
		}
	})

	t.Run("runs a relative entrypoint from the workdir", func(t *testing.T) {
		cfg := guestConfig{argv: []string{"../usr/local/bin/show", "x"}, workdir: "/srv"}
		console := bootGuest(t, a, newGuest(t, cfg), nil)
		got := parseShown(t, console)
		if got.argv0 != "../usr/local/bin/show" || !reflect.DeepEqual(got.args, []string{"x"}) || got.cwd != "/srv" {
			t.Errorf("ran %q %q in %q, want ../usr/local/bin/show [x] in /srv", got.argv0, got.args, got.cwd)
		}
		if len(got.env) != 0 {
			t.Errorf("environment = %q, want none", got.env)
		}
	})

	t.Run("reports a missing entrypoint and powers off", func(t *testing.T) {
		// show exists on the default PATH, but the configured PATH replaces it.
		cfg := guestConfig{argv: []string{"show"}, env: []string{"PATH=/nowhere"}}
		console := bootGuest(t, a, newGuest(t, cfg), nil)
		if !strings.Contains(console, MarkerError+"entrypoint not found: show\n") {
			t.Errorf("no %q line on the console:\n%s", MarkerError+"entrypoint not found: show", console)
		}
		if strings.Contains(console, MarkerStarted) {
			t.Errorf("the init reported a start:\n%s", console)
		}
	})

	t.Run("power button stops the program", func(t *testing.T) {
		cfg := guestConfig{argv: []string{"sleep", "600"}}
		console := bootGuest(t, a, newGuest(t, cfg), pressPowerButton)
		if code := exitCode(t, console); code != 128+15 {
			t.Errorf("exit code = %d, want %d (SIGTERM)", code, 128+15)
		}
	})

	t.Run("keeps the overlay across boots", func(t *testing.T) {
		d := t.TempDir()
		overlay := newOverlay(t, d)
		write := guestDisks{rootfs: rootfs, overlay: overlay,
			config: buildConfigDisk(t, t.TempDir(), guestConfig{argv: []string{"sh", "-c", `echo "$1" >/etc/kept`, "sh", "written in the first boot"}})}
		if console := bootGuest(t, a, write, nil); exitCode(t, console) != 0 {
			t.Fatalf("writing boot failed:\n%s", console)
		}
		read := guestDisks{rootfs: rootfs, overlay: overlay,
			config: buildConfigDisk(t, t.TempDir(), guestConfig{argv: []string{"cat", "/etc/kept"}})}
		console := bootGuest(t, a, read, nil)
		if !strings.Contains(console, MarkerStarted+"\nwritten in the first boot\n"+MarkerExited+"0\n") {
			t.Errorf("the second boot did not read the first one's file:\n%s", console)
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
