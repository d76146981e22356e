package qemu

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

func baseConfig() vmm.Config {
	return vmm.Config{
		Dir:         "/data/guests/01J",
		Kernel:      "/data/system/vmlinux",
		Initrd:      "/data/system/initrd",
		Cmdline:     "console=ttyS0 panic=-1",
		VCPUs:       2,
		MemoryBytes: 256 * mib,
		Disks: []vmm.Disk{
			{Path: "/data/images/abc/rootfs.erofs", Serial: "hypeman-rootfs", ReadOnly: true},
			{Path: "/data/guests/01J/overlay.raw", Serial: "hypeman-overlay"},
		},
		ConsoleLog:  "/data/guests/01J/logs/console.log",
		Accelerator: "tcg",
	}
}

func TestCommandLineBootsConfiguredDevices(t *testing.T) {
	got, err := commandLine(baseConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"qemu-system-x86_64",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-M", "q35", "-accel", "tcg", "-cpu", "max",
		"-smp", "2",
		"-m", "size=256M",
		"-kernel", "/data/system/vmlinux",
		"-initrd", "/data/system/initrd",
		"-append", "console=ttyS0 panic=-1",
		"-drive", "file=/data/images/abc/rootfs.erofs,if=none,id=disk0,format=raw,readonly=on,cache=writeback,werror=enospc,rerror=report",
		"-device", "virtio-blk-pci,drive=disk0,serial=hypeman-rootfs",
		"-drive", "file=/data/guests/01J/overlay.raw,if=none,id=disk1,format=raw,readonly=off,cache=writeback,werror=enospc,rerror=report",
		"-device", "virtio-blk-pci,drive=disk1,serial=hypeman-overlay",
		"-chardev", "file,id=con0,path=/data/guests/01J/logs/console.log,append=on",
		"-serial", "chardev:con0",
		"-chardev", "socket,id=qmp0,path=/data/guests/01J/qmp.sock,server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		"-pidfile", "/data/guests/01J/qemu.pid",
		"-device", "virtio-rng-pci",
		"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on,deflate-on-oom=on",
	}
	if !slices.Equal(got, want) {
		t.Errorf("argv:\n got %q\nwant %q", got, want)
	}
}

func TestCommandLineVariants(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*vmm.Config)
		resume bool
		want   [][]string // each must appear as consecutive arguments
		absent []string
	}{
		{
			name:   "hotplug memory adds a virtio-mem device sized by its own backend",
			modify: func(c *vmm.Config) { c.HotplugBytes = 768 * mib },
			want: [][]string{
				{"-m", "size=256M,slots=1,maxmem=1024M"},
				{"-object", "memory-backend-ram,id=mem-hp,size=768M"},
				{"-device", "virtio-mem-pci,id=vmem0,memdev=mem-hp,requested-size=0"},
			},
		},
		{
			name:   "no hotplug memory means no virtio-mem device",
			absent: []string{"-object", "virtio-mem-pci,id=vmem0,memdev=mem-hp,requested-size=0"},
		},
		{
			name:   "kvm runs the host CPU model",
			modify: func(c *vmm.Config) { c.Accelerator = "kvm" },
			want:   [][]string{{"-accel", "kvm", "-cpu", "host"}},
		},
		{
			name:   "restore waits paused for an incoming stream",
			resume: true,
			want:   [][]string{{"-incoming", "defer", "-S"}},
		},
		{
			name:   "commas in paths are escaped for QEMU's option lists",
			modify: func(c *vmm.Config) { c.Disks[0].Path = "/data/a,b.raw"; c.Dir = "/data/x,y" },
			want: [][]string{
				{"-drive", "file=/data/a,,b.raw,if=none,id=disk0,format=raw,readonly=on,cache=writeback,werror=enospc,rerror=report"},
				{"-chardev", "socket,id=qmp0,path=/data/x,,y/qmp.sock,server=on,wait=off"},
			},
		},
		{
			name: "volume disks follow in order, each with its serial and read-only flag",
			modify: func(c *vmm.Config) {
				c.Disks = append(c.Disks, vmm.Disk{Path: "/data/volumes/a/data.raw", Serial: "01JAAAAAAAAAAAAAAAAA"},
					vmm.Disk{Path: "/data/volumes/b/data.raw", Serial: "01JBBBBBBBBBBBBBBBBB", ReadOnly: true})
			},
			want: [][]string{{
				"-drive", "file=/data/volumes/a/data.raw,if=none,id=disk2,format=raw,readonly=off,cache=writeback,werror=enospc,rerror=report",
				"-device", "virtio-blk-pci,drive=disk2,serial=01JAAAAAAAAAAAAAAAAA",
				"-drive", "file=/data/volumes/b/data.raw,if=none,id=disk3,format=raw,readonly=on,cache=writeback,werror=enospc,rerror=report",
				"-device", "virtio-blk-pci,drive=disk3,serial=01JBBBBBBBBBBBBBBBBB",
			}},
		},
		{
			name:   "a disk without serial gets none",
			modify: func(c *vmm.Config) { c.Disks = []vmm.Disk{{Path: "/d.raw"}} },
			want:   [][]string{{"-device", "virtio-blk-pci,drive=disk0"}},
		},
		{
			name:   "a network interface opens the prepared TAP with the instance's MAC",
			modify: func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "hm0123456789ab", MAC: "02:68:0a:64:00:02"} },
			want: [][]string{
				{"-netdev", "tap,id=net0,ifname=hm0123456789ab,script=no,downscript=no"},
				{"-device", "virtio-net-pci,netdev=net0,mac=02:68:0a:64:00:02"},
			},
		},
		{
			name:   "a restore recreates the same network device",
			modify: func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "hm0123456789ab", MAC: "02:68:0a:64:00:02"} },
			resume: true,
			want: [][]string{
				{"-netdev", "tap,id=net0,ifname=hm0123456789ab,script=no,downscript=no"},
				{"-device", "virtio-net-pci,netdev=net0,mac=02:68:0a:64:00:02"},
			},
		},
		{
			name:   "no network interface means no network device",
			absent: []string{"-netdev"},
		},
		{
			name:   "an empty initrd and cmdline are left out",
			modify: func(c *vmm.Config) { c.Initrd, c.Cmdline = "", "" },
			absent: []string{"-initrd", "-append"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.modify != nil {
				tt.modify(&cfg)
			}
			got, err := commandLine(cfg, tt.resume)
			if err != nil {
				t.Fatal(err)
			}
			for _, seq := range tt.want {
				if !containsSeq(got, seq) {
					t.Errorf("argv lacks %q:\n%q", seq, got)
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(got, a) {
					t.Errorf("argv has %q:\n%q", a, got)
				}
			}
			if !tt.resume && slices.Contains(got, "-incoming") {
				t.Errorf("a boot must not wait for a stream:\n%q", got)
			}
			if !strings.Contains(strings.Join(got, " "), cfg.Dir) {
				t.Errorf("argv must contain the instance directory %q", cfg.Dir)
			}
		})
	}
}

func TestCommandLineRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*vmm.Config)
		want   string
	}{
		{"relative directory", func(c *vmm.Config) { c.Dir = "guests/x" }, `dir path "guests/x"`},
		{"relative disk", func(c *vmm.Config) { c.Disks[1].Path = "overlay.raw" }, `disk 1 path "overlay.raw"`},
		{"relative kernel", func(c *vmm.Config) { c.Kernel = "vmlinux" }, `kernel path "vmlinux"`},
		{"socket path too long", func(c *vmm.Config) { c.Dir = "/" + strings.Repeat("d", 100) }, "QMP socket path"},
		{"no vcpus", func(c *vmm.Config) { c.VCPUs = 0 }, "vcpus 0"},
		{"memory not whole MiB", func(c *vmm.Config) { c.MemoryBytes = 256*mib + 1 }, "memory 268435457 bytes"},
		{"no memory", func(c *vmm.Config) { c.MemoryBytes = 0 }, "memory 0 bytes"},
		{"hotplug not a 2 MiB multiple", func(c *vmm.Config) { c.HotplugBytes = 3 * mib }, "hotplug memory 3145728 bytes"},
		{"negative hotplug", func(c *vmm.Config) { c.HotplugBytes = -2 * mib }, "hotplug memory -2097152 bytes"},
		{"serial too long for virtio-blk", func(c *vmm.Config) { c.Disks[0].Serial = "abcdefghijklmnopqrstu" }, `serial "abcdefghijklmnopqrstu"`},
		{"TAP name longer than an interface name", func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "hm0123456789abcd", MAC: "02:00:00:00:00:01"} }, `TAP device name "hm0123456789abcd"`},
		{"TAP name with a slash", func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "a/b", MAC: "02:00:00:00:00:01"} }, `TAP device name "a/b"`},
		{"MAC that is not one", func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "hm1", MAC: "02:00:00:00:01"} }, `MAC address "02:00:00:00:01"`},
		{"MAC that would smuggle an option", func(c *vmm.Config) { c.Net = &vmm.NetConfig{Tap: "hm1", MAC: "02:00:00:00:00:01,romfile=x"} }, `MAC address "02:00:00:00:00:01,romfile=x"`},
		{"unknown accelerator", func(c *vmm.Config) { c.Accelerator = "auto" }, `accelerator "auto" is not one of kvm, tcg`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.modify(&cfg)
			_, err := commandLine(cfg, false)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func containsSeq(args, seq []string) bool {
	for i := 0; i+len(seq) <= len(args); i++ {
		if slices.Equal(args[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

func TestCommandLineOfARAMFileGuest(t *testing.T) {
	cfg := baseConfig()
	cfg.RAMFile = "/data/guests/01J/memory,ram"
	cfg.HotplugBytes = 128 * mib
	got, err := commandLine(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, " ")
	for _, want := range []string{
		"-M q35,memory-backend=ram0 ",
		"-object memory-backend-file,id=ram0,size=256M,mem-path=/data/guests/01J/memory,,ram,share=on -m size=256M,slots=1,maxmem=384M",
		// Hot-plugged memory stays anonymous: the stream carries it.
		"memory-backend-ram,id=mem-hp,size=128M",
		"free-page-reporting=off",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv lacks %q:\n%s", want, joined)
		}
	}
	cfg.RAMFile = "memory.ram"
	if _, err := commandLine(cfg, false); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "RAM file") {
		t.Errorf("a relative RAM file: %v", err)
	}
}
