package image

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFileOverlap: the bitmap of checkFileOverlap finds two runs sharing a
// page of the page file exactly when one page is taken twice (runs across
// 64-page words, runs of other images or page files ignored), and the
// error names the two runs as the sorted extents did.
func TestFileOverlap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 2000 {
		pages := 1 + rng.Uint64N(300)
		p := &Process{Pid: 1, PageFileSize: int64(pages) * PageSize}
		taken := make([]int, pages)
		twice := false
		var v VMA
		for range 1 + rng.IntN(12) {
			off := rng.Uint64N(pages)
			r := PageRun{Addr: uint64(len(v.Pages)) << 32, Count: 1 + rng.Uint64N(min(pages-off, 80)), FileOff: int64(off * PageSize)}
			switch rng.IntN(6) {
			case 0:
				r.Depth = 1
			case 1:
				r.Pid = 2
			default:
				for pg := off; pg < off+r.Count; pg++ {
					taken[pg]++
					twice = twice || taken[pg] > 1
				}
			}
			v.Pages = append(v.Pages, r)
		}
		p.VMAs = []VMA{v}
		words := (pages + 63) / 64
		if got := overlapsInBitmap(p, make([]uint64, words)); got != twice {
			t.Fatalf("trial %d: bitmap says overlap %v, pages say %v: %+v", trial, got, twice, v.Pages)
		}
		err := checkFileOverlap(p)
		if (err != nil) != twice || err != nil && !strings.Contains(err.Error(), "overlap in page file") {
			t.Fatalf("trial %d: checkFileOverlap = %v, overlap %v", trial, err, twice)
		}
	}
}
