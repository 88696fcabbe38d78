package mem

import (
	"math/rand/v2"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// pageSource is where an increment finds one page: its own page file at
// FileOff (Depth 0) or an older image's.
type pageSource struct {
	fileOff    int64
	depth, pid int
}

// expand maps every page of runs to its source.
func expand(runs []image.PageRun) map[uint64]pageSource {
	m := make(map[uint64]pageSource)
	for _, r := range runs {
		for i := uint64(0); i < r.Count; i++ {
			m[r.Addr+i*image.PageSize] = pageSource{r.FileOff + int64(i*image.PageSize), r.Depth, r.Pid}
		}
	}
	return m
}

// randomRanges returns up to n sorted disjoint page ranges within
// [start, end).
func randomRanges(rng *rand.Rand, start, end uint64, n int) [][2]uint64 {
	pages := (end - start) / image.PageSize
	var out [][2]uint64
	a := start + uint64(rng.IntN(4))*image.PageSize
	for len(out) < n && a < end {
		b := min(end, a+uint64(1+rng.IntN(3))*image.PageSize)
		out = append(out, [2]uint64{a, b})
		a = b + uint64(1+rng.IntN(int(pages/uint64(n)+2)))*image.PageSize
	}
	return out
}

// TestIncrPages checks the page runs of a tracked mapping in an increment
// page by page against their definition, on random inputs: a written page
// is this image's, at the next offset of the page file in address order; a
// page neither written nor empty is the pre-copied one if any, else the
// parent's one image deeper, else absent. Parent runs outside the mapping,
// in shared mappings, and out of order are covered.
func TestIncrPages(t *testing.T) {
	const P = image.PageSize
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		start, end := uint64(64*P), uint64(64*P+uint64(8+rng.IntN(120))*P)
		written := randomRanges(rng, start, end, 1+rng.IntN(8))
		empty := cutRanges(randomRanges(rng, start, end, rng.IntN(4)), written)
		gone := unionRanges(written, empty)
		var pre []image.PageRun
		for i, r := range randomRanges(rng, start, end, rng.IntN(5)) {
			pre = append(pre, image.PageRun{Addr: r[0], Count: (r[1] - r[0]) / P, FileOff: int64(1000+10*i) * P})
		}
		parent := &image.Process{}
		lo := start - 16*P
		for _, kind := range []string{image.KindAnon, image.KindAnon, image.KindSysV} {
			hi := lo + uint64(16+rng.IntN(80))*P
			v := image.VMA{Start: lo, End: hi, Kind: kind}
			for i, r := range randomRanges(rng, lo, hi, 1+rng.IntN(10)) {
				pr := image.PageRun{Addr: r[0], Count: (r[1] - r[0]) / P, FileOff: int64(5000+20*i) * P, Depth: rng.IntN(3), Pid: 7}
				if k := len(v.Pages) - 1; k >= 0 && rng.IntN(2) == 0 {
					// Contiguous in the file with the run before, at the
					// same depth: pieces of both may join.
					pr.FileOff, pr.Depth = v.Pages[k].FileOff+int64(pr.Addr-v.Pages[k].Addr), v.Pages[k].Depth
				}
				v.Pages = append(v.Pages, pr)
			}
			parent.VMAs = append(parent.VMAs, v)
			lo = hi
		}
		if round%3 == 0 { // a parent whose VMAs are not in address order
			parent.VMAs[0], parent.VMAs[1] = parent.VMAs[1], parent.VMAs[0]
		}
		const base = 77 * P
		var pages []image.PageRun
		if round%4 == 1 { // a list with a run before the range already
			pages = []image.PageRun{{Addr: start - 2*P, Count: 2, FileOff: base - 2*P}}
		}
		got := incrPages(pages, start, end, written, gone, pre, parent, base)
		if pages != nil {
			if got[0].Addr != start-2*P || got[0].FileOff != base-2*P {
				t.Fatalf("round %d: the run before the range changed: %v", round, got[0])
			}
			got = clipRuns(got, start, end)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Addr < got[i-1].Addr+got[i-1].Count*P {
				t.Fatalf("round %d: runs out of order: %v", round, got)
			}
		}
		want := make(map[uint64]pageSource)
		off := int64(base)
		for _, w := range written {
			for a := w[0]; a < w[1]; a += P {
				want[a] = pageSource{off, 0, 0}
				off += P
			}
		}
		preAt, parentAt := expand(cutRuns(pre, gone)), map[uint64]pageSource{}
		for _, v := range parent.VMAs {
			if v.Kind == image.KindSysV {
				continue
			}
			for a, s := range expand(v.Pages) {
				parentAt[a] = pageSource{s.fileOff, s.depth + 1, s.pid}
			}
		}
		for a := start; a < end; a += P {
			if _, ok := want[a]; ok || inRanges(gone, a) {
				continue
			}
			if s, ok := preAt[a]; ok {
				want[a] = s
			} else if s, ok := parentAt[a]; ok {
				want[a] = s
			}
		}
		have := expand(got)
		if len(have) != len(want) {
			t.Fatalf("round %d: %d pages named, want %d\nruns %v", round, len(have), len(want), got)
		}
		for a, s := range want {
			if have[a] != s {
				t.Fatalf("round %d: page %#x from %+v, want %+v", round, a, have[a], s)
			}
		}
	}
}

// inRanges reports whether addr lies in one of rs.
func inRanges(rs [][2]uint64, addr uint64) bool {
	for _, r := range rs {
		if addr >= r[0] && addr < r[1] {
			return true
		}
	}
	return false
}

// BenchmarkIncrPages is the run arithmetic of one tracked 1 GiB mapping in
// an increment, in the freeze: a parent chain whose runs random writes cut
// into 14,000 (what the rounds of a pre-copy migration of a 1 GiB writer
// leave), 1,000 pages written since.
func BenchmarkIncrPages(b *testing.B) {
	const P = image.PageSize
	start, end := uint64(1<<32), uint64(1<<32+1<<30)
	rng := rand.New(rand.NewPCG(3, 4))
	v := image.VMA{Start: start, End: end, Kind: image.KindAnon}
	for i, r := range randomRanges(rng, start, end, 14000) {
		v.Pages = append(v.Pages, image.PageRun{Addr: r[0], Count: (r[1] - r[0]) / P, FileOff: int64(i) * 4 * P, Depth: i % 3})
	}
	parent := &image.Process{VMAs: []image.VMA{v}}
	written := randomRanges(rng, start, end, 1000)
	b.ReportAllocs()
	for b.Loop() {
		incrPages(nil, start, end, written, written, nil, parent, 0)
	}
}
