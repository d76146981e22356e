package images

import (
	"context"
	"fmt"
)

// ExtractTo writes the flattened filesystem of the image ref names (layers applied, whiteouts
// honoured, ownership kept numerically) into dir on the host, which must exist. Nothing is
// cached: a volume seeded from an image needs the files, not an erofs.
func (s *Store) ExtractTo(ctx context.Context, ref, dir string) error {
	src, err := parseRef(ref)
	if err != nil {
		return err
	}
	r, err := s.resolve(ctx, ref, src)
	if err != nil {
		return err
	}
	s.log(ctx, "image extract", map[string]any{"ref": ref, "digest": r.digest, "dir": dir})
	if err := s.extract(ctx, r, dir); err != nil {
		return fmt.Errorf("image %q (%s): %w", ref, r.digest, err)
	}
	return nil
}
