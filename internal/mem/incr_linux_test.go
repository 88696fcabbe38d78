package mem

import (
	"fmt"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestCutRuns checks the interval arithmetic that decides which pages an
// increment takes from its parent.
func TestCutRuns(t *testing.T) {
	const P = image.PageSize
	runs := []image.PageRun{{Addr: 0, Count: 10, FileOff: 100 * P, Depth: 1}, {Addr: 20 * P, Count: 5, FileOff: 0, Depth: 2}}
	cut := [][2]uint64{{0, 2 * P}, {4 * P, 5 * P}, {9 * P, 21 * P}, {24 * P, 30 * P}}
	got := fmt.Sprint(cutRuns(runs, cut))
	want := fmt.Sprint([]image.PageRun{
		{Addr: 2 * P, Count: 2, FileOff: 102 * P, Depth: 1},
		{Addr: 5 * P, Count: 4, FileOff: 105 * P, Depth: 1},
		{Addr: 21 * P, Count: 3, FileOff: 1 * P, Depth: 2},
	})
	if got != want {
		t.Fatalf("cutRuns:\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(cutRanges([][2]uint64{{0, 10 * P}}, [][2]uint64{{3 * P, 4 * P}})); got != fmt.Sprint([][2]uint64{{0, 3 * P}, {4 * P, 10 * P}}) {
		t.Fatalf("cutRanges: %s", got)
	}
	parent := &image.Process{VMAs: []image.VMA{{Start: 0, End: 16 * P, Kind: image.KindAnon, Pages: []image.PageRun{{Addr: 2 * P, Count: 10, FileOff: 0}}}}}
	got = fmt.Sprint(parentRuns(parent, 4*P, 8*P))
	if want := fmt.Sprint([]image.PageRun{{Addr: 4 * P, Count: 4, FileOff: 2 * P, Depth: 1}}); got != want {
		t.Fatalf("parentRuns: got %s, want %s", got, want)
	}
}
