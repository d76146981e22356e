package instances

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/images"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/units"
)

// Volumes: persistent disks that outlive every instance they are attached to
// (docs/adr/0008-volumes.md). A volume is a sparse ext4 image under {data_dir}/volumes/{id}; an
// instance mounts it at a path inside its merged root. This file holds what a volume is and the
// rules for asking for one; volume_store.go keeps them on the host, volume_attach.go binds them to
// instances.

// Volume is what the manager reports about one volume.
type Volume struct {
	ID   string
	Name string
	// Size is the volume's capacity in bytes; AllocatedBytes is what its sparse image takes on
	// the host's disk.
	Size           int64
	AllocatedBytes int64
	// Source is what the volume was seeded from at create ("" for an empty filesystem).
	Source    string
	CreatedAt time.Time
	// AttachedTo are the instances that hold the volume now, in any state (a Standby instance
	// holds its volumes too), ordered by instance name.
	AttachedTo []VolumeAttachment
	// Path is the volume's disk image on the host.
	Path string
}

// VolumeAttachment is one instance's hold on a volume.
type VolumeAttachment struct {
	InstanceID   string
	InstanceName string
	MountPath    string
	ReadOnly     bool
}

// VolumeSpec is what a user sets on a volume.
type VolumeSpec struct {
	Name string
	Size int64
	// Source seeds the filesystem at create: an image reference as an instance's image takes it
	// (the image's flattened filesystem), or "tar:" followed by the absolute path of a tar archive
	// on the host. "" makes an empty filesystem.
	Source string
}

// VolumeMount attaches a volume to an instance.
type VolumeMount struct {
	VolumeID string
	// MountPath is where the guest init mounts the volume inside the merged root; missing
	// directories are created.
	MountPath string
	ReadOnly  bool
}

// Sentinel errors of volumes; callers decide with errors.Is.
var (
	// ErrVolumeNotFound: no volume with that id or name on the host. It is not an ErrNotFound,
	// which says an instance is gone.
	ErrVolumeNotFound = errors.New("volume not found")
	// ErrVolumeInUse: the volume is attached where the operation needs it free (a writable
	// attachment held elsewhere, a delete of an attached volume, a resize under a Standby instance).
	ErrVolumeInUse = errors.New("volume in use")
)

// Limits on what a VolumeSpec may ask for.
const (
	MinVolume = 16 * units.MiB
	// MaxVolume is the largest file ext4 holds with 4 KiB blocks; the image is sparse, so only
	// what the guest writes takes space.
	MaxVolume = 16 * units.TiB
	// VolumeTarPrefix marks a Source that is a tar archive on the host.
	VolumeTarPrefix = "tar:"
)

// VolumeSizeRule is what a volume's size accepts.
var VolumeSizeRule = SizeRule{MinVolume, MaxVolume, units.MiB,
	"from " + units.Format(MinVolume) + " to " + units.Format(MaxVolume) + ", in whole MiB"}

// VolumeSourceRule describes valid sources, for error messages and documentation.
const VolumeSourceRule = `an image reference (as an instance's image takes it), "tar:" followed by the absolute path of a tar ` +
	`archive on the host, or nothing for an empty filesystem`

// CheckVolumeSize checks a volume's size.
func CheckVolumeSize(n int64) error {
	r := VolumeSizeRule
	if n < r.Min || n > r.Max || n%r.Multiple != 0 {
		return &FieldError{Field: "size", Value: units.Format(n), Allowed: r.Allowed}
	}
	return nil
}

// CheckVolumeResize checks a new size against the volume's current one: volumes only grow.
func CheckVolumeResize(have, want int64) error {
	if err := CheckVolumeSize(want); err != nil {
		return err
	}
	if want < have {
		return &FieldError{Field: "size", Value: units.Format(want),
			Allowed: "a volume only grows: at least its current size " + units.Format(have) + " (replace the volume to make it smaller, which loses its data)"}
	}
	return nil
}

// ValidateVolumeSource checks a volume's source.
func ValidateVolumeSource(src string) error {
	if src == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(src, VolumeTarPrefix); ok {
		if !path.IsAbs(p) || strings.ContainsRune(p, 0) {
			return &FieldError{Field: "source", Value: src, Allowed: `"tar:" followed by an absolute path on the host`}
		}
		return nil
	}
	if err := images.ValidateRef(src); err != nil {
		return &FieldError{Field: "source", Value: src, Allowed: VolumeSourceRule + " (" + err.Error() + ")"}
	}
	return nil
}

// ValidateVolumeID checks that id can be a volume id (a ULID, like an instance id).
func ValidateVolumeID(id string) error {
	if !ulidRE.MatchString(id) {
		return &FieldError{Field: "volume_id", Value: id, Allowed: "a volume's id: " + IDRule[len("a ULID: "):]}
	}
	return nil
}

// Validate checks every field of a volume spec and reports all that are wrong at once.
func (s *VolumeSpec) Validate() error {
	var errs []error
	if err := ValidateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := CheckVolumeSize(s.Size); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateVolumeSource(s.Source); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MountPathRule describes valid mount paths, for error messages and documentation.
const MountPathRule = "an absolute, clean path other than \"/\" (such as \"/var/lib/data\"), without NUL bytes"

// ValidateMountPath checks one mount path.
func ValidateMountPath(p string) error {
	if !path.IsAbs(p) || p == "/" || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return &FieldError{Field: "mount_path", Value: p, Allowed: MountPathRule}
	}
	return nil
}

// ValidateMounts checks an instance's volume mounts together: each one's path, no volume twice,
// no path twice, and no path inside another's (the inner mount would hide or be hidden by the
// outer volume). field names the list in errors ("volume"); items are field[i].
func ValidateMounts(field string, mounts []VolumeMount) []error {
	var errs []error
	for i, v := range mounts {
		at := fmt.Sprintf("%s[%d]", field, i)
		var fe *FieldError
		if err := ValidateVolumeID(v.VolumeID); errors.As(err, &fe) {
			errs = append(errs, &FieldError{Field: at + ".volume_id", Value: v.VolumeID, Allowed: fe.Allowed})
		}
		if err := ValidateMountPath(v.MountPath); err != nil {
			errs = append(errs, &FieldError{Field: at + ".mount_path", Value: v.MountPath, Allowed: MountPathRule})
			continue
		}
		for j, o := range mounts[:i] {
			other := fmt.Sprintf("%s[%d]", field, j)
			switch {
			case v.VolumeID == o.VolumeID:
				errs = append(errs, &FieldError{Field: at + ".volume_id", Value: v.VolumeID,
					Allowed: "a volume attached once per instance; " + other + " attaches it already"})
			case v.MountPath == o.MountPath:
				errs = append(errs, &FieldError{Field: at + ".mount_path", Value: v.MountPath,
					Allowed: "a path no other volume of the instance is mounted at; " + other + " is mounted there"})
			case within(v.MountPath, o.MountPath) || within(o.MountPath, v.MountPath):
				errs = append(errs, &FieldError{Field: at + ".mount_path", Value: v.MountPath,
					Allowed: "a path neither inside nor above another volume's mount; " + other + " is mounted at " + o.MountPath})
			}
		}
	}
	return errs
}

// within reports whether p lies strictly inside dir (both clean and absolute).
func within(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }
