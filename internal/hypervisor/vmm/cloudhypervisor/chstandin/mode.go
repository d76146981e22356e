package chstandin

import (
	"fmt"
	"net/http"
)

// Mode selects which Cloud Hypervisor release the stand-in behaves like.
type Mode string

const (
	// V52: every API error other than a malformed request is a 500, stale sockets block startup.
	V52 Mode = "v52"
	// V53: "VM is not created" becomes a 404, stale sockets are cleaned up under a .lock file.
	V53 Mode = "v53"
	// Head: the development branch after v53: config validation answers 400/409 and unknown
	// device ids 404.
	Head Mode = "head"
)

// Modes lists every mode, oldest first.
var Modes = []Mode{V52, V53, Head}

// ParseMode turns "v52", "v53" or "head" into a Mode; "" means V53, the latest release.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return V53, nil
	case V52, V53, Head:
		return m, nil
	}
	return "", fmt.Errorf("stand-in mode %q is not one of v52, v53, head", s)
}

func (m Mode) String() string { return string(m) }

// Version is the Cargo version vmm.ping reports ("53.0.0").
func (m Mode) Version() string {
	switch m {
	case V52:
		return "52.0.0"
	case Head:
		return "54.0.0"
	}
	return "53.0.0"
}

// BuildVersion is what `git describe` said when the binary was built: vmm.ping's build_version and
// the word after "cloud-hypervisor" in `--version`.
func (m Mode) BuildVersion() string {
	switch m {
	case V52:
		return "v52.0"
	case Head:
		return "v53.0-246-gae44c2971"
	}
	return "v53.0"
}

// VersionLine is what `cloud-hypervisor --version` prints.
func (m Mode) VersionLine() string { return "cloud-hypervisor " + m.BuildVersion() }

// atLeast53 is true from v53 on (404 for a missing VM, nulls omitted, stale-socket cleanup).
func (m Mode) atLeast53() bool { return m == V53 || m == Head }

// notCreatedStatus answers the internal VmNotCreated / VmMissingConfig errors.
func (m Mode) notCreatedStatus() int {
	if m.atLeast53() {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// unknownDeviceStatus answers NoDeviceToRemove / UnknownDeviceId.
func (m Mode) unknownDeviceStatus() int {
	if m == Head {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// validationStatus answers a config that fails validation; duplicate says whether the cause is a
// duplicate id or path.
func (m Mode) validationStatus(duplicate bool) int {
	switch {
	case m != Head:
		return http.StatusInternalServerError
	case duplicate:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// bodyLimit is micro_http's request body limit.
func (m Mode) bodyLimit() int64 {
	if m == Head {
		return 4 << 20
	}
	return 51200
}
