package mem

import (
	"cmp"
	"slices"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
)

// Incr makes Dump aware of dirty tracking (internal/track) for one
// process. Tracked are private anonymous mappings (anonymous, heap,
// stack), private file mappings (their copied-on-write pages; memfds and
// deleted files too) and every view of shared anonymous memory and SysV
// segments (see SharedDirty). The contents of memfds and deleted files
// (held in the manifest) are saved in full by every dump.
type Incr struct {
	// Tracked says the process's memory is tracked by rtcr: its "uw"
	// VmFlags are rtcr's own.
	Tracked bool
	// Scan, when set, makes the dump incremental: of a tracked mapping
	// only the pages written since the parent image are copied (and
	// protected again); the others are taken from Parent.
	Scan *track.Scanner
	// Parent is the process in the parent image (nil: it has none).
	Parent *image.Process
	// Shared, with Scan, is what the tree's scan of shared memory found
	// (nil: shared memory is saved whole).
	Shared *SharedDirty
	// Pre are the pages copied while the process ran (pre-copy rounds,
	// see CopyRanges): depth-0 runs of the page file being written, the
	// latest copy of each page, sorted. A page not written since its copy
	// is taken from there instead of Parent.
	Pre []image.PageRun
	// Lost are ranges (in any order, perhaps overlapping) whose
	// write-protect state a failed pre-copy scan or copy may have reset
	// without their pages being saved: they are saved as if written.
	Lost [][2]uint64
	// Last says the dump ends the tracking (no --track-mem: a last
	// increment, a migration's last freeze): the written pages are found
	// without being protected again, which spares the freeze the
	// kernel's re-protection of each (~3 µs a page on our VMs).
	Last bool
	// Untracked (out) are the mappings not tracked yet (new, moved, or
	// never registered), to register after the copy; TrackedRanges (out)
	// those that are; Reprotect (out) the tracked views of shared memory,
	// to protect again after the copy (ScanShared left them as they were).
	Untracked, TrackedRanges, Reprotect [][2]uint64
}

// written returns the ranges of [start, end) written since the parent
// image (or the last pre-copy round) and, unless the dump is the last
// (Last), protects them again.
func (inc *Incr) written(start, end uint64) ([][2]uint64, error) {
	if inc.Last {
		return inc.Scan.Peek(start, end)
	}
	return inc.Scan.Written(start, end)
}

// uffdWP is the VmFlags mnemonic of a mapping registered for
// userfaultfd write-protect tracking.
const uffdWP = "uw"

// Trackable reports whether v is a mapping dirty tracking covers.
func Trackable(v *image.VMA) bool {
	return privateAnon(v) || privateFile(v) || sharedView(v)
}

// privateAnon reports whether v is private anonymous memory.
func privateAnon(v *image.VMA) bool {
	return !v.Shared && v.ShareOf == nil && (v.Kind == image.KindAnon || v.Kind == image.KindHeap || v.Kind == image.KindStack)
}

// privateFile reports whether v is a private mapping of a file (a memfd
// and a deleted file included).
func privateFile(v *image.VMA) bool {
	return !v.Shared && (v.Kind == image.KindFile || v.Kind == image.KindMemfd || v.Kind == image.KindDeleted)
}

// sharedView reports whether v is a view of shared anonymous memory or of
// a SysV segment.
func sharedView(v *image.VMA) bool {
	_, ok := vmaKey(v)
	return ok
}

// stripTracking removes the "uw" flag from m when the tracking is rtcr's,
// and says whether it was there.
func (inc *Incr) stripTracking(m *procfs.Mapping) bool {
	if inc == nil || !inc.Tracked || !m.HasFlag(uffdWP) {
		return false
	}
	m.VmFlags = slices.DeleteFunc(slices.Clone(m.VmFlags), func(f string) bool { return f == uffdWP })
	return true
}

// dumpTracked saves the pages of the mapping v of pid incrementally when
// it can, and says whether it did: a tracked private mapping of a process
// tracked since the parent image, or a view of shared memory that saves
// pages (saves: the object's first view, or a later one reaching past it)
// of an object tracked in all its views.
func dumpTracked(pid int, pm *procfs.Pagemap, v *image.VMA, tracked bool, covered [2]uint64, saves bool, inc *Incr, entries *[]uint64, cp *copier) (bool, error) {
	if inc.Scan == nil {
		return false, nil
	}
	switch {
	case tracked && privateAnon(v):
		return true, incrRuns(v, inc, cp)
	case tracked && privateFile(v):
		return true, fileIncrRuns(pm, v, inc, entries, cp)
	case saves && sharedView(v):
		if o := inc.Shared.object(v); o != nil {
			return true, sharedIncrRuns(pid, v, o, covered, inc, cp)
		}
	}
	return false, nil
}

// incrRuns saves the pages of the tracked mapping v written since the
// parent image and names the parent's copy of every other page the parent
// holds, except pages that are empty now (dropped since: zero again).
func incrRuns(v *image.VMA, inc *Incr, cp *copier) error {
	// Empty pages first: a page dropped since (MADV_DONTNEED) is also
	// reported written, and reading it would save a page of zeros.
	empty, err := inc.Scan.Empty(v.Start, v.End)
	if err != nil {
		return err
	}
	written, err := inc.written(v.Start, v.End)
	if err != nil {
		return err
	}
	written = cutRanges(written, empty)
	if lost := clipRanges(inc.Lost, v.Start, v.End); len(lost) > 0 {
		written = unionRanges(written, cutRanges(lost, empty))
	}
	pre := clipRuns(inc.Pre, v.Start, v.End)
	v.Pages = incrPages(v.Pages, v.Start, v.End, written, mergeRanges(written, empty), pre, inc.Parent, cp.offset())
	for _, w := range written { // in the order incrPages gave them offsets
		if err := cp.add(w[0], w[1]-w[0], false); err != nil {
			return err
		}
	}
	return nil
}

// incrPages appends to pages, in address order, the page runs of the
// tracked range [start, end) of an incremental image: the written ranges
// (sorted), saved in this image's page file one after the other from
// offset base; of the other pages, those copied while the process ran
// (pre, this image's, sorted) and, of the rest, those the parent holds
// (one image deeper). gone (sorted) are the written and the empty pages:
// no older copy of them is named.
//
// It runs in the freeze, once per tracked mapping, over every run of the
// chain there (tens of thousands after many increments of a randomly
// written mapping): the parent's runs are clipped, cut and merged in one
// pass, and pages grows once, into the room PrepareRuns made before the
// freeze when pages is nil, since fresh memory is dear in the freeze (a
// page fault costs ~12 µs on our VMs).
func incrPages(pages []image.PageRun, start, end uint64, written, gone [][2]uint64, pre []image.PageRun, parent *image.Process, base int64) []image.PageRun {
	if len(pre) > 0 && len(gone) > 0 {
		pre = cutRunsInto(takeRuns(len(pre)+len(gone)), pre, gone)
	}
	n, sorted := parentRunCount(parent, start, end)
	// The parent's runs are cut by gone, then by pre: each range of
	// either splits at most one of them in two.
	need := len(written) + len(pre) + n + len(gone) + len(pre)
	if pages == nil {
		pages = takeRuns(need) // made ready before the freeze
	} else {
		pages = slices.Grow(pages, need)
	}
	m := incrMerge{pages: pages, written: written, pre: pre, off: base}
	var pieces, rest, older []image.PageRun // older: the parent's pieces when they must be sorted first
	forParentRuns(parent, start, end, func(r image.PageRun) {
		pieces = cutRun(pieces[:0], r, gone)
		if len(pre) > 0 {
			rest = rest[:0]
			for _, p := range pieces {
				rest = cutRunBy(rest, p, pre, runBounds)
			}
			pieces, rest = rest, pieces
		}
		if !sorted {
			older = append(older, pieces...)
			return
		}
		for _, p := range pieces {
			m.take(p)
		}
	})
	if !sorted { // a parent made elsewhere
		slices.SortFunc(older, func(x, y image.PageRun) int { return cmp.Compare(x.Addr, y.Addr) })
		for _, p := range older {
			m.take(p)
		}
	}
	return m.finish()
}

// incrMerge merges the parent's runs, in address order, with the written
// ranges and pre-copied runs of an increment (incrPages).
type incrMerge struct {
	pages   []image.PageRun
	written [][2]uint64
	pre     []image.PageRun
	off     int64 // the page-file offset of the next written range
}

// finish appends the written ranges and pre-copied runs not taken yet and
// returns the list.
func (m *incrMerge) finish() []image.PageRun {
	m.take(image.PageRun{Addr: ^uint64(0)})
	return m.pages
}

// take appends the written ranges and pre-copied runs below r, then r;
// r.Addr ^0 (finish) appends only the rest of them.
func (m *incrMerge) take(r image.PageRun) {
	for {
		w := len(m.written) > 0 && m.written[0][0] < r.Addr
		p := len(m.pre) > 0 && m.pre[0].Addr < r.Addr
		switch {
		case w && (!p || m.written[0][0] < m.pre[0].Addr):
			a, b := m.written[0][0], m.written[0][1]
			m.written = m.written[1:]
			m.pages = joinRun(m.pages, image.PageRun{Addr: a, Count: (b - a) / image.PageSize, FileOff: m.off})
			m.off += int64(b - a)
		case p:
			m.pages = joinRun(m.pages, m.pre[0])
			m.pre = m.pre[1:]
		default:
			if r.Addr != ^uint64(0) {
				m.pages = joinRun(m.pages, r)
			}
			return
		}
	}
}

// forParentRuns calls fn with each run of parent's private memory within
// [start, end), clipped to it, one image deeper, in the parent's order.
func forParentRuns(parent *image.Process, start, end uint64, fn func(image.PageRun)) {
	if parent == nil {
		return
	}
	for _, pv := range parent.VMAs {
		if pv.End <= start || pv.Start >= end || pv.Shared || pv.ShareOf != nil || pv.Kind == image.KindSysV {
			continue
		}
		for _, r := range pv.Pages {
			a, b := max(r.Addr, start), min(r.Addr+r.Count*image.PageSize, end)
			if a < b {
				p := runPart(r, a, b)
				p.Depth++
				fn(p)
			}
		}
	}
}

// parentRunCount returns how many runs forParentRuns gives and whether
// they come in address order (they do from any image rtcr wrote: its
// mappings and their runs are sorted).
func parentRunCount(parent *image.Process, start, end uint64) (n int, sorted bool) {
	last, sorted := uint64(0), true
	forParentRuns(parent, start, end, func(r image.PageRun) {
		if n > 0 && r.Addr < last {
			sorted = false
		}
		last = r.Addr + r.Count*image.PageSize
		n++
	})
	return n, sorted
}

// cutRanges removes the sorted ranges cut from the sorted ranges rs.
func cutRanges(rs, cut [][2]uint64) [][2]uint64 {
	if len(cut) == 0 {
		return rs
	}
	runs := make([]image.PageRun, len(rs))
	for i, r := range rs {
		runs[i] = image.PageRun{Addr: r[0], Count: (r[1] - r[0]) / image.PageSize}
	}
	var out [][2]uint64
	for _, r := range cutRuns(runs, cut) {
		out = append(out, [2]uint64{r.Addr, r.Addr + r.Count*image.PageSize})
	}
	return out
}

// appendRun appends r to v.Pages, joined with the last run when both are
// contiguous in memory and in the same page file (same image, same
// holding process).
func appendRun(v *image.VMA, r image.PageRun) { v.Pages = joinRun(v.Pages, r) }

// joinRun appends r to pages, joined with the last run as appendRun does.
func joinRun(pages []image.PageRun, r image.PageRun) []image.PageRun {
	if k := len(pages) - 1; k >= 0 {
		p := &pages[k]
		if p.Depth == r.Depth && p.Pid == r.Pid && p.Addr+p.Count*image.PageSize == r.Addr && p.FileOff+int64(p.Count*image.PageSize) == r.FileOff {
			p.Count += r.Count
			return pages
		}
	}
	return append(pages, r)
}

// mergeRanges merges two sorted lists of disjoint ranges into one sorted
// list.
func mergeRanges(a, b [][2]uint64) [][2]uint64 {
	out := make([][2]uint64, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.SortFunc(out, func(x, y [2]uint64) int { return cmp.Compare(x[0], y[0]) })
	return out
}

// cutRuns removes the sorted ranges cut from the sorted runs.
func cutRuns(runs []image.PageRun, cut [][2]uint64) []image.PageRun {
	// Each range cut splits at most one run in two: no growing in the
	// freeze (fresh memory is dear there).
	return cutRunsInto(make([]image.PageRun, 0, len(runs)+len(cut)), runs, cut)
}

// cutRunsInto is cutRuns appending to out, which should have room for
// len(runs)+len(cut) more runs.
func cutRunsInto(out, runs []image.PageRun, cut [][2]uint64) []image.PageRun {
	for _, r := range runs {
		out = cutRun(out, r, cut)
	}
	return out
}

// cutRun appends to out the parts of the run r outside the sorted ranges
// cut.
func cutRun(out []image.PageRun, r image.PageRun, cut [][2]uint64) []image.PageRun {
	return cutRunBy(out, r, cut, rangeBounds)
}

// rangeBounds and runBounds give the address range of a range and of a
// run, for cutRunBy.
func rangeBounds(r [2]uint64) (uint64, uint64)   { return r[0], r[1] }
func runBounds(r image.PageRun) (uint64, uint64) { return r.Addr, r.Addr + r.Count*image.PageSize }

// runPart returns the part [a, b) of the run r (page-aligned, within it):
// the same copy of those pages, from the same page file.
func runPart(r image.PageRun, a, b uint64) image.PageRun {
	return image.PageRun{Addr: a, Count: (b - a) / image.PageSize, FileOff: r.FileOff + int64(a-r.Addr), Depth: r.Depth, Pid: r.Pid}
}

// cutRunBy appends to out the parts of the run r outside cut, sorted and
// disjoint, whose address ranges bounds gives.
func cutRunBy[T any](out []image.PageRun, r image.PageRun, cut []T, bounds func(T) (uint64, uint64)) []image.PageRun {
	a, end := r.Addr, r.Addr+r.Count*image.PageSize
	k := sort.Search(len(cut), func(i int) bool { _, e := bounds(cut[i]); return e > a })
	for a < end {
		b := end
		var cs, ce uint64
		if k < len(cut) {
			cs, ce = bounds(cut[k])
		}
		if k < len(cut) && cs < end {
			b = max(a, cs)
		}
		if b > a {
			out = append(out, runPart(r, a, b))
		}
		if k >= len(cut) || cs >= end {
			break
		}
		a = min(ce, end)
		k++
	}
	return out
}

// clipRanges returns the parts of the sorted ranges rs within [start, end).
func clipRanges(rs [][2]uint64, start, end uint64) [][2]uint64 {
	var out [][2]uint64
	for _, r := range rs {
		a, b := max(r[0], start), min(r[1], end)
		if a < b {
			out = append(out, [2]uint64{a, b})
		}
	}
	return out
}

// clipRuns returns the parts of the sorted, disjoint runs within
// [start, end): a part of runs itself when none of them crosses start or
// end (it runs in the freeze over thousands of pre-copied runs, where fresh
// memory is dear), else a copy.
func clipRuns(runs []image.PageRun, start, end uint64) []image.PageRun {
	i := sort.Search(len(runs), func(i int) bool { _, e := runBounds(runs[i]); return e > start })
	j := sort.Search(len(runs), func(i int) bool { return runs[i].Addr >= end })
	if i >= j {
		return nil
	}
	in := runs[i:j:j]
	if _, e := runBounds(in[len(in)-1]); in[0].Addr >= start && e <= end {
		return in
	}
	out := slices.Clone(in)
	for _, k := range []int{0, len(out) - 1} {
		r := &out[k]
		*r = runPart(*r, max(r.Addr, start), min(r.Addr+r.Count*image.PageSize, end))
	}
	return out
}

// runRanges returns the address ranges of runs.
func runRanges(runs []image.PageRun) [][2]uint64 {
	out := make([][2]uint64, len(runs))
	for i, r := range runs {
		out[i] = [2]uint64{r.Addr, r.Addr + r.Count*image.PageSize}
	}
	return out
}

// unionRanges returns the union of two lists of ranges, sorted, disjoint
// and joined where they touch.
func unionRanges(a, b [][2]uint64) [][2]uint64 {
	all := mergeRanges(a, b)
	var out [][2]uint64
	for _, r := range all {
		if k := len(out) - 1; k >= 0 && r[0] <= out[k][1] {
			out[k][1] = max(out[k][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
