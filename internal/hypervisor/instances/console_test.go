package instances

import (
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/system"
)

func TestHowABootEndedIsReadFromItsConsole(t *testing.T) {
	const at = "2026-01-02T03:04:05Z"
	started, exited := system.MarkerStarted+"\r\n", func(code string) string { return system.MarkerExited + code + "\r\n" }
	tests := []struct {
		name     string
		console  string
		wantCode int // -1: none
		reason   string
	}{
		{"the program exited", started + "hello\r\n" + exited("3") + "[    4.2] reboot: Power down\r\n", 3, "program exited with code 3 at " + at},
		{"an exit of an earlier boot is not this one's", started + exited("1") + started + "still running\r\n", -1,
			"the VMM process ended without the guest reporting an exit (the guest's last console output was at " + at + ")"},
		{"a guest powered off by its program", started + "bye\r\n[    9.1] reboot: Power down\r\n", -1, "guest powered off at " + at + " without its program reporting an exit"},
		{"a kernel panic", started + "[    9.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\r\n", -1,
			"guest kernel panicked at " + at + " (not syncing: Attempted to kill init! exitcode=0x00000009) without its program reporting an exit"},
		{"a console cut before the start marker still has the exit", strings.Repeat("output\n", 10) + exited("0") + "reboot: Power down\n", 0, "program exited with code 0 at " + at},
		{"a half-written exit line is no exit code", started + system.MarkerExited, -1, "the VMM process ended without the guest reporting an exit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := endOf([]byte(tt.console), at)
			switch {
			case tt.wantCode < 0 && end.ExitCode != nil:
				t.Errorf("exit code %d, want none", *end.ExitCode)
			case tt.wantCode >= 0 && (end.ExitCode == nil || *end.ExitCode != tt.wantCode):
				t.Errorf("exit code %v, want %d", end.ExitCode, tt.wantCode)
			}
			if !strings.HasPrefix(end.Reason, tt.reason) {
				t.Errorf("reason %q, want it to start %q", end.Reason, tt.reason)
			}
		})
	}
}
