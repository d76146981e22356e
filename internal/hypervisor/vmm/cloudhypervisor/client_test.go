package cloudhypervisor

import (
	"slices"
	"testing"
)

func TestDecodeErrorBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"JSON array (v47 on)", `["Error from API","The VM info is not available","VM is not created"]`, []string{"Error from API", "The VM info is not available", "VM is not created"}},
		{"text line (v38-v46)", "Error from API: The VM could not be paused: VM is not running\n", []string{"Error from API: The VM could not be paused: VM is not running"}},
		{"Debug text (before v38)", "VmPause(VmNotRunning)", []string{"VmPause(VmNotRunning)"}},
		{"micro_http object", `{ "error": "Invalid HTTP method.\nAll previous unanswered requests will be dropped." }`, []string{"Invalid HTTP method. All previous unanswered requests will be dropped."}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		if got := decodeErrorBody([]byte(tt.body)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestIsNoVM(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&APIError{Action: "vm.info", Status: 404, Messages: []string{"Error from API", "The VM info is not available", "VM is not created"}}, true},
		{&APIError{Action: "vm.info", Status: 500, Messages: []string{"Error from API", "The VM info is not available", "VM is not created"}}, true},
		{&APIError{Action: "vm.info", Status: 500, Messages: []string{"Error from API: The VM info is not available: VM is not created"}}, true},
		{&APIError{Action: "vm.info", Status: 500, Messages: []string{"VmInfo(VmNotCreated)"}}, true},
		{&APIError{Action: "vm.info", Status: 404, Messages: []string{"Not Found"}}, false},
		{&APIError{Action: "vm.pause", Status: 500, Messages: []string{"Error from API", "The VM could not be paused", "VM is not running"}}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isNoVM(tt.err); got != tt.want {
			t.Errorf("isNoVM(%v) = %v", tt.err, got)
		}
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out, want string
		ok        bool
	}{
		{"cloud-hypervisor v53.0\n", "v53.0", true},
		{"cloud-hypervisor v53.0-246-gae44c2971-dirty\nfeatures: kvm\n", "v53.0-246-gae44c2971-dirty", true},
		{"cloud-hypervisor 0.14.1", "0.14.1", true},
		{"qemu 7.2", "", false},
		{"cloud-hypervisor", "", false},
	}
	for _, tt := range tests {
		got, err := parseVersion(tt.out)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseVersion(%q) = %q, %v", tt.out, got, err)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		name    string
		binary  string
		ping    vmmPing
		wantErr bool
	}{
		{"same build", "v53.0", vmmPing{BuildVersion: "v53.0", Version: "53.0.0"}, false},
		{"development build", "v53.0-246-gae44c2971", vmmPing{BuildVersion: "v53.0-246-gae44c2971", Version: "54.0.0"}, false},
		{"another binary answered", "v53.0", vmmPing{BuildVersion: "v52.0", Version: "52.0.0"}, true},
		{"too old for image_type", "v50.0", vmmPing{BuildVersion: "v50.0", Version: "50.0.0"}, true},
		{"unreadable version", "v53.0", vmmPing{Version: "latest"}, true},
	}
	for _, tt := range tests {
		if err := checkVersion(tt.binary, tt.ping); (err != nil) != tt.wantErr {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
