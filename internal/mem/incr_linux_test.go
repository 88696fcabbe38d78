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
	got = fmt.Sprint(incrPages(nil, 4*P, 8*P, nil, nil, nil, parent, 0))
	if want := fmt.Sprint([]image.PageRun{{Addr: 4 * P, Count: 4, FileOff: 2 * P, Depth: 1}}); got != want {
		t.Fatalf("incrPages, nothing written: got %s, want %s", got, want)
	}
	written := [][2]uint64{{5 * P, 6 * P}}
	got = fmt.Sprint(incrPages(nil, 4*P, 8*P, written, written, nil, parent, 9*P))
	if want := fmt.Sprint([]image.PageRun{{Addr: 4 * P, Count: 1, FileOff: 2 * P, Depth: 1}, {Addr: 5 * P, Count: 1, FileOff: 9 * P}, {Addr: 6 * P, Count: 2, FileOff: 4 * P, Depth: 1}}); got != want {
		t.Fatalf("incrPages, a page written: got %s, want %s", got, want)
	}
}

// TestPreCopyArithmetic checks how pre-copied runs are kept: a later copy
// of a page overrides an earlier one (Latest), runs and ranges are clipped
// to a mapping, and lost ranges join the written ones (unionRanges).
func TestPreCopyArithmetic(t *testing.T) {
	const P = image.PageSize
	pre := []image.PageRun{{Addr: 0, Count: 4, FileOff: 0}, {Addr: 10 * P, Count: 2, FileOff: 4 * P}}
	newer := []image.PageRun{{Addr: 2 * P, Count: 1, FileOff: 6 * P}, {Addr: 11 * P, Count: 3, FileOff: 7 * P}}
	got := fmt.Sprint(Latest(pre, newer))
	want := fmt.Sprint([]image.PageRun{
		{Addr: 0, Count: 2, FileOff: 0},
		{Addr: 2 * P, Count: 1, FileOff: 6 * P},
		{Addr: 3 * P, Count: 1, FileOff: 3 * P},
		{Addr: 10 * P, Count: 1, FileOff: 4 * P},
		{Addr: 11 * P, Count: 3, FileOff: 7 * P},
	})
	if got != want {
		t.Fatalf("Latest:\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(clipRuns(pre, 1*P, 11*P)); got != fmt.Sprint([]image.PageRun{{Addr: P, Count: 3, FileOff: P}, {Addr: 10 * P, Count: 1, FileOff: 4 * P}}) {
		t.Fatalf("clipRuns: %s", got)
	}
	if got := fmt.Sprint(clipRanges([][2]uint64{{0, 4 * P}, {8 * P, 12 * P}}, 2*P, 9*P)); got != fmt.Sprint([][2]uint64{{2 * P, 4 * P}, {8 * P, 9 * P}}) {
		t.Fatalf("clipRanges: %s", got)
	}
	u := unionRanges([][2]uint64{{0, 2 * P}, {6 * P, 7 * P}}, [][2]uint64{{5 * P, 6 * P}, {P, 3 * P}, {6 * P, 9 * P}})
	if got := fmt.Sprint(u); got != fmt.Sprint([][2]uint64{{0, 3 * P}, {5 * P, 9 * P}}) {
		t.Fatalf("unionRanges: %s", got)
	}
}

// TestClipRuns checks clipRuns on sorted runs, and that a range no run
// crosses gives a part of the list itself (no fresh memory in the freeze).
func TestClipRuns(t *testing.T) {
	const P = image.PageSize
	runs := []image.PageRun{{Addr: 0, Count: 4, FileOff: 0}, {Addr: 10 * P, Count: 2, FileOff: 4 * P}, {Addr: 20 * P, Count: 3, FileOff: 6 * P, Depth: 1, Pid: 7}}
	for _, c := range []struct {
		name       string
		start, end uint64
		want       []image.PageRun
		shared     bool // a part of runs itself
	}{
		{"all", 0, 30 * P, runs, true},
		{"middle exactly", 10 * P, 12 * P, runs[1:2], true},
		{"between runs", 5 * P, 15 * P, runs[1:2], true},
		{"none", 4 * P, 10 * P, nil, false},
		{"after all", 23 * P, 40 * P, nil, false},
		{"crossing start", 1 * P, 12 * P, []image.PageRun{{Addr: P, Count: 3, FileOff: P}, runs[1]}, false},
		{"crossing end", 10 * P, 21 * P, []image.PageRun{runs[1], {Addr: 20 * P, Count: 1, FileOff: 6 * P, Depth: 1, Pid: 7}}, false},
		{"inside one run", 21 * P, 22 * P, []image.PageRun{{Addr: 21 * P, Count: 1, FileOff: 7 * P, Depth: 1, Pid: 7}}, false},
	} {
		got := clipRuns(runs, c.start, c.end)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		shared := false
		for i := range runs {
			shared = shared || (len(got) > 0 && &got[0] == &runs[i])
		}
		if shared != c.shared {
			t.Errorf("%s: part of the list itself %v, want %v", c.name, shared, c.shared)
		}
	}
	if fmt.Sprint(runs[0]) != fmt.Sprint(image.PageRun{Addr: 0, Count: 4, FileOff: 0}) {
		t.Errorf("the list changed: %v", runs)
	}
}
