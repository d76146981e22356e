package instances

import "context"

// What a caller may ask about an image before it creates an instance from it or gives an
// instance another spelling of its image; the provider asks at plan time.

// ImageDigest is the manifest digest ref resolves to now, as a create would pull it, without
// pulling it.
func (m *Manager) ImageDigest(ctx context.Context, ref string) (string, error) {
	return m.images.Resolve(ctx, ref)
}

// CheckImage finds what a create would fail at for an image read on this machine (oci:,
// docker-archive:) without reading its layers; a registry reference passes unchecked.
func (m *Manager) CheckImage(ctx context.Context, ref string) error {
	return m.images.Check(ctx, ref)
}
