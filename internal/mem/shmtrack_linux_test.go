package mem

import (
	"fmt"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestSharedRangeHelpers checks the interval arithmetic of incremental
// shared memory and private file mappings: complements, joins, the
// parent's runs of the same object only, and write-protect markers.
func TestSharedRangeHelpers(t *testing.T) {
	const P = image.PageSize
	got := fmt.Sprint(complement([][2]uint64{{2 * P, 3 * P}, {5 * P, 9 * P}}, P, 8*P))
	if want := fmt.Sprint([][2]uint64{{P, 2 * P}, {3 * P, 5 * P}}); got != want {
		t.Fatalf("complement: got %s, want %s", got, want)
	}
	if got := fmt.Sprint(complement(nil, 0, 4*P)); got != fmt.Sprint([][2]uint64{{0, 4 * P}}) {
		t.Fatalf("complement of nothing: %s", got)
	}
	got = fmt.Sprint(joinRanges([][2]uint64{{5 * P, 6 * P}, {0, P}, {P, 2 * P}, {4 * P, 6 * P}}))
	if want := fmt.Sprint([][2]uint64{{0, 2 * P}, {4 * P, 6 * P}}); got != want {
		t.Fatalf("joinRanges: got %s, want %s", got, want)
	}
	v := &image.VMA{Start: 16 * P, End: 32 * P, Kind: image.KindSharedAnon, Shared: true, Inode: 7, Offset: 4 * P}
	parent := &image.Process{VMAs: []image.VMA{
		{Start: 16 * P, End: 32 * P, Kind: image.KindSharedAnon, Shared: true, Inode: 7, Offset: 4 * P,
			Pages: []image.PageRun{{Addr: 18 * P, Count: 2, FileOff: 3 * P}}},
		// The same place, another object or another offset: not taken.
		{Start: 20 * P, End: 24 * P, Kind: image.KindSharedAnon, Shared: true, Inode: 8, Offset: 8 * P,
			Pages: []image.PageRun{{Addr: 20 * P, Count: 1}}},
		{Start: 24 * P, End: 28 * P, Kind: image.KindSharedAnon, Shared: true, Inode: 7, Offset: 0,
			Pages: []image.PageRun{{Addr: 24 * P, Count: 1}}},
	}}
	got = fmt.Sprint(objectRuns(parent, v))
	if want := fmt.Sprint([]image.PageRun{{Addr: 18 * P, Count: 2, FileOff: 3 * P, Depth: 1}}); got != want {
		t.Fatalf("objectRuns: got %s, want %s", got, want)
	}
	// Pagemap entries: a marker (swap type 31, offset 1), a swapped page
	// (type 0), a swap entry whose frame the reader may not see.
	const swap = 1 << 62
	for _, c := range []struct {
		e    uint64
		want bool
	}{{swap | 0x3f, true}, {swap | 1<<5, false}, {swap, false}, {1<<63 | 0x1f, false}} {
		if isMarker(c.e) != c.want {
			t.Errorf("isMarker(%#x) = %v, want %v", c.e, !c.want, c.want)
		}
	}
}
