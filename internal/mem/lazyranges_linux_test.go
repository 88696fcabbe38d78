package mem

import (
	"fmt"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestLazyRangesJoined checks that the runs a lazy restore serves are
// joined where they touch inside one mapping (a chain's runs, cut up by
// its increments), never across two mappings, and still leave out the
// pages written at once (a thread's rseq area).
func TestLazyRangesJoined(t *testing.T) {
	const P = image.PageSize
	p := &image.Process{
		Pid: 7,
		VMAs: []image.VMA{
			{Start: 0, End: 100 * P, Kind: image.KindAnon, Pages: image.PageRuns{
				{Addr: 0, Count: 10, FileOff: 0, Depth: 1},
				{Addr: 10 * P, Count: 5, FileOff: 0},
				{Addr: 15 * P, Count: 5, FileOff: 10 * P, Depth: 1},
				{Addr: 30 * P, Count: 70, FileOff: 20 * P, Depth: 1},
			}},
			// Adjacent to the first, its first run touching the last
			// one above: a range of its own.
			{Start: 100 * P, End: 200 * P, Kind: image.KindAnon, Pages: image.PageRuns{
				{Addr: 100 * P, Count: 20, FileOff: 5 * P},
				{Addr: 120 * P, Count: 20, FileOff: 90 * P, Depth: 1},
			}},
		},
		Threads: []image.Thread{
			{Tid: 7, Rseq: &image.Rseq{Ptr: 130*P + 64, Len: 32}},
			{Tid: 8, Rseq: &image.Rseq{Ptr: 15 * P, Len: 32}},
		},
	}
	vmas, runs := LazyRanges(p)
	if got, want := fmt.Sprint(vmas), fmt.Sprint([][2]uint64{{0, 100 * P}, {100 * P, 200 * P}}); got != want {
		t.Errorf("mappings %s, want %s", got, want)
	}
	want := [][2]uint64{{0, 15 * P}, {16 * P, 20 * P}, {30 * P, 100 * P}, {100 * P, 130 * P}, {131 * P, 140 * P}}
	if got := fmt.Sprint(runs); got != fmt.Sprint(want) {
		t.Errorf("runs %s, want %s", got, fmt.Sprint(want))
	}
}
