package mem

import (
	"fmt"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

const pg = image.PageSize

// TestPlanInherit: a child keeps, of its parent's memory, the parts of
// compatible mappings where both name the same pages of the same page
// file; not a mapping of another kind or with MADV_DONTFORK, nor pages it
// saved itself or took from another place.
func TestPlanInherit(t *testing.T) {
	anon := func(start, end uint64, runs ...image.PageRun) image.VMA {
		return image.VMA{Start: start, End: end, Kind: image.KindAnon, Prot: 3, Pages: runs}
	}
	parent := &image.Process{Pid: 10, VMAs: []image.VMA{
		anon(0x10000, 0x20000, image.PageRun{Addr: 0x10000, Count: 16, FileOff: 0}),
		anon(0x30000, 0x31000, image.PageRun{Addr: 0x30000, Count: 1, FileOff: 16 * pg}),
		{Start: 0x40000, End: 0x41000, Kind: image.KindAnon, VmFlags: []string{image.VmDontFork},
			Pages: []image.PageRun{{Addr: 0x40000, Count: 1, FileOff: 17 * pg}}},
	}}
	child := &image.Process{Pid: 11, VMAs: []image.VMA{
		// Grown past the parent's end; pages 0-3 shared, page 4 its own,
		// pages 5-6 the parent's bytes but at another offset (not the same
		// place), the grown part its own.
		anon(0x10000, 0x28000,
			image.PageRun{Addr: 0x10000, Count: 4, FileOff: 0, Pid: 10},
			image.PageRun{Addr: 0x14000, Count: 1, FileOff: 0},
			image.PageRun{Addr: 0x15000, Count: 2, FileOff: 9 * pg, Pid: 10},
			image.PageRun{Addr: 0x20000, Count: 8, FileOff: pg}),
		// A stack where the parent has anonymous memory: not kept.
		{Start: 0x30000, End: 0x31000, Kind: image.KindStack, Prot: 3, GrowsDown: true,
			Pages: []image.PageRun{{Addr: 0x30000, Count: 1, FileOff: 16 * pg, Pid: 10}}},
		// The parent's MADV_DONTFORK memory is not in the child at all.
		{Start: 0x40000, End: 0x41000, Kind: image.KindAnon, VmFlags: []string{image.VmDontFork},
			Pages: []image.PageRun{{Addr: 0x40000, Count: 1, FileOff: 17 * pg, Pid: 10}}},
	}}
	plan := planInherit(child, parent)
	if got, want := fmt.Sprintf("%x", plan.kept), fmt.Sprintf("%x", [][2]uint64{{0x10000, 0x20000}}); got != want {
		t.Fatalf("kept %s, want %s", got, want)
	}
	if got, want := fmt.Sprintf("%x", plan.inherited), fmt.Sprintf("%x", [][2]uint64{{0x10000, 0x14000}}); got != want {
		t.Fatalf("inherited %s, want %s", got, want)
	}
	// Written: everything but the inherited pages.
	left := cutRuns(child.VMAs[0].Pages, plan.inherited)
	if len(left) != 3 || left[0].Addr != 0x14000 {
		t.Fatalf("runs written %+v", left)
	}
	// The parent's part of the grown mapping is kept; the rest is mapped.
	if got := fmt.Sprintf("%x", subtract(0x10000, 0x28000, plan.kept)); got != "[[20000 28000]]" {
		t.Fatalf("mapped around the kept part: %s", got)
	}
	if got := fmt.Sprintf("%x", intersect(0x18000, 0x30000, plan.kept)); got != "[[18000 20000]]" {
		t.Fatalf("intersect: %s", got)
	}
}
