package rtcr

import (
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestReadManifestAt: the full image's manifest decoded when it arrived
// stands in for reading it again only for the parent (depth 1) in the
// directory it was read from.
func TestReadManifestAt(t *testing.T) {
	c := &image.Checkpoint{}
	m := &readManifest{dir: "/srv/in/.incoming-x/base", c: c}
	for _, tc := range []struct {
		depth int
		dir   string
		want  *image.Checkpoint
	}{
		{1, "/srv/in/.incoming-x/base", c},
		{1, "/srv/in/.incoming-x/./base/", c},
		{2, "/srv/in/.incoming-x/base", nil},
		{1, "/srv/in/.incoming-x/other", nil},
		{1, "/srv/in/.incoming-y/base", nil},
	} {
		if got := m.at(tc.depth, tc.dir); got != tc.want {
			t.Errorf("at(%d, %q) = %p, want %p", tc.depth, tc.dir, got, tc.want)
		}
	}
	if got := (*readManifest)(nil).at(1, "/srv/in/.incoming-x/base"); got != nil {
		t.Errorf("no manifest read: at = %p, want nil", got)
	}
}
