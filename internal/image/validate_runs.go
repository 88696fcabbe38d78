package image

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// validateRuns checks the page runs of v (their overlap in the page file:
// checkFileOverlap).
func validateRuns(p *Process, v *VMA) error {
	for j := range v.Pages {
		r := &v.Pages[j]
		if r.Count == 0 {
			return fmt.Errorf("page run at %#x: no pages", r.Addr)
		}
		if r.Addr%PageSize != 0 {
			return fmt.Errorf("page run at %#x: not page-aligned", r.Addr)
		}
		// Written so that no product or sum can overflow.
		if r.Addr < v.Start || r.Addr >= v.End || r.Count > (v.End-r.Addr)/PageSize {
			return fmt.Errorf("page run at %#x (%d pages): outside vma", r.Addr, r.Count)
		}
		if j > 0 {
			prev := &v.Pages[j-1]
			if r.Addr < prev.Addr+prev.Count*PageSize {
				return fmt.Errorf("page run at %#x: overlaps or precedes run at %#x", r.Addr, prev.Addr)
			}
		}
		if r.FileOff < 0 || r.FileOff%PageSize != 0 {
			return fmt.Errorf("page run at %#x: file offset %d not page-aligned", r.Addr, r.FileOff)
		}
		if r.Pid != 0 {
			// Held by another process's page file: checked by
			// validateOwners.
			if r.Count > uint64(math.MaxInt64-r.FileOff)/PageSize {
				return fmt.Errorf("page run at %#x: %d pages at file offset %d out of range", r.Addr, r.Count, r.FileOff)
			}
			if r.Depth < 0 || r.Depth > MaxChain {
				return fmt.Errorf("page run at %#x: depth %d out of range", r.Addr, r.Depth)
			}
			continue
		}
		if r.Depth != 0 {
			// Held by an ancestor: checked against its page file by
			// CheckChainLink; the depth by validateChain.
			if r.Depth < 0 || r.Depth > MaxChain || r.Count > uint64(math.MaxInt64-r.FileOff)/PageSize {
				return fmt.Errorf("page run at %#x: depth %d or %d pages at file offset %d out of range", r.Addr, r.Depth, r.Count, r.FileOff)
			}
			continue
		}
		if r.FileOff >= p.PageFileSize || r.Count > uint64(p.PageFileSize-r.FileOff)/PageSize {
			return fmt.Errorf("page run at %#x: %d pages at file offset %d beyond page file size %d",
				r.Addr, r.Count, r.FileOff, p.PageFileSize)
		}
	}
	return nil
}

// fileSpan is the page-file extent of one page run, for the overlap check.
type fileSpan struct {
	off, end int64
	addr     uint64
}

// ownRun reports whether r is held by its process's own page file in this
// image (the runs whose page-file extents must not overlap).
func ownRun(r *PageRun) bool { return r.Depth == 0 && r.Pid == 0 }

// checkFileOverlap checks that no two runs of p held by its own page file
// share a page of it; validateRuns has checked each inside the file. A
// bitmap of the file's pages does it in one pass when it is no larger
// than a list of the runs' extents would be (an increment of a pre-copy
// migration has thousands of runs in a page file of a few MiB: sorting
// their extents was most of Validate); otherwise, and to name the two
// runs once one overlaps, the extents are sorted.
func checkFileOverlap(p *Process) error {
	n := 0
	for i := range p.VMAs {
		for j := range p.VMAs[i].Pages {
			if ownRun(&p.VMAs[i].Pages[j]) {
				n++
			}
		}
	}
	if n < 2 {
		return nil
	}
	words := (p.PageFileSize/PageSize + 63) / 64
	if words >= 0 && words <= int64(3*n) && !overlapsInBitmap(p, make([]uint64, words)) {
		return nil // 8 bytes a word, 24 a fileSpan: no more memory
	}
	spans := make([]fileSpan, 0, n)
	for i := range p.VMAs {
		for _, r := range p.VMAs[i].Pages {
			if ownRun(&r) {
				// Count*PageSize <= PageFileSize - FileOff (validateRuns):
				// no overflow.
				spans = append(spans, fileSpan{off: r.FileOff, end: r.FileOff + int64(r.Count)*PageSize, addr: r.Addr})
			}
		}
	}
	slices.SortFunc(spans, func(a, b fileSpan) int { return cmp.Compare(a.off, b.off) })
	for i := 1; i < len(spans); i++ {
		if a, b := spans[i-1], spans[i]; b.off < a.end {
			return fmt.Errorf("page runs at %#x and %#x overlap in page file (offsets %d and %d)", a.addr, b.addr, a.off, b.off)
		}
	}
	return nil
}

// overlapsInBitmap marks the pages of p's page file its own runs take in
// bits, one a page, and reports whether one is taken twice.
func overlapsInBitmap(p *Process, bits []uint64) bool {
	for i := range p.VMAs {
		for _, r := range p.VMAs[i].Pages {
			if !ownRun(&r) {
				continue
			}
			// Within the file (validateRuns): the bits exist.
			first := uint64(r.FileOff / PageSize)
			for pg, end := first, first+r.Count; pg < end; {
				w, b := pg/64, pg%64
				k := min(64-b, end-pg)
				mask := (^uint64(0) >> (64 - k)) << b
				if bits[w]&mask != 0 {
					return true
				}
				bits[w] |= mask
				pg += k
			}
		}
	}
	return false
}
