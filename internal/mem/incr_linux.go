package mem

import (
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
	// Untracked (out) are the mappings not tracked yet (new, moved, or
	// never registered), to register after the copy; TrackedRanges (out)
	// those that are; Reprotect (out) the tracked views of shared memory,
	// to protect again after the copy (ScanShared left them as they were).
	Untracked, TrackedRanges, Reprotect [][2]uint64
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
	written, err := inc.Scan.Written(v.Start, v.End)
	if err != nil {
		return err
	}
	written = cutRanges(written, empty)
	if lost := clipRanges(inc.Lost, v.Start, v.End); len(lost) > 0 {
		written = unionRanges(written, cutRanges(lost, empty))
	}
	gone := mergeRanges(written, empty)
	// Copied while it ran and not written since: this image's copy.
	refs := cutRuns(clipRuns(inc.Pre, v.Start, v.End), gone)
	if inc.Parent != nil {
		older := cutRuns(parentRuns(inc.Parent, v.Start, v.End), gone)
		refs = append(refs, cutRuns(older, runRanges(refs))...)
		sort.Slice(refs, func(i, j int) bool { return refs[i].Addr < refs[j].Addr })
	}
	// Both lists are sorted and disjoint: merge them in address order.
	i, j := 0, 0
	for i < len(written) || j < len(refs) {
		if j == len(refs) || (i < len(written) && written[i][0] < refs[j].Addr) {
			w := written[i]
			i++
			n := (w[1] - w[0]) / image.PageSize
			appendRun(v, image.PageRun{Addr: w[0], Count: n, FileOff: cp.offset()})
			if err := cp.add(w[0], w[1]-w[0], false); err != nil { // written since: its own
				return err
			}
			continue
		}
		appendRun(v, refs[j])
		j++
	}
	return nil
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
func appendRun(v *image.VMA, r image.PageRun) {
	if k := len(v.Pages) - 1; k >= 0 {
		p := &v.Pages[k]
		if p.Depth == r.Depth && p.Pid == r.Pid && p.Addr+p.Count*image.PageSize == r.Addr && p.FileOff+int64(p.Count*image.PageSize) == r.FileOff {
			p.Count += r.Count
			return
		}
	}
	v.Pages = append(v.Pages, r)
}

// parentRuns returns the runs of parent within [start, end), one image
// deeper (held by the parent or, through it, an older image).
func parentRuns(parent *image.Process, start, end uint64) []image.PageRun {
	n := 0
	for _, pv := range parent.VMAs {
		if pv.End > start && pv.Start < end {
			n += len(pv.Pages)
		}
	}
	out := make([]image.PageRun, 0, n)
	for _, pv := range parent.VMAs {
		if pv.End <= start || pv.Start >= end || pv.Shared || pv.ShareOf != nil || pv.Kind == image.KindSysV {
			continue
		}
		for _, r := range pv.Pages {
			a, b := r.Addr, r.Addr+r.Count*image.PageSize
			a, b = max(a, start), min(b, end)
			if a >= b {
				continue
			}
			out = append(out, image.PageRun{Addr: a, Count: (b - a) / image.PageSize,
				FileOff: r.FileOff + int64(a-r.Addr), Depth: r.Depth + 1, Pid: r.Pid})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// mergeRanges merges two sorted lists of disjoint ranges into one sorted
// list.
func mergeRanges(a, b [][2]uint64) [][2]uint64 {
	out := make([][2]uint64, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// cutRuns removes the sorted ranges cut from the sorted runs.
func cutRuns(runs []image.PageRun, cut [][2]uint64) []image.PageRun {
	// Each range cut splits at most one run in two: no growing in the
	// freeze (fresh memory is dear there).
	out := make([]image.PageRun, 0, len(runs)+len(cut))
	for _, r := range runs {
		a, end := r.Addr, r.Addr+r.Count*image.PageSize
		k := sort.Search(len(cut), func(i int) bool { return cut[i][1] > a })
		for a < end {
			b := end
			if k < len(cut) && cut[k][0] < end {
				b = max(a, cut[k][0])
			}
			if b > a {
				out = append(out, image.PageRun{Addr: a, Count: (b - a) / image.PageSize, FileOff: r.FileOff + int64(a-r.Addr), Depth: r.Depth, Pid: r.Pid})
			}
			if k >= len(cut) || cut[k][0] >= end {
				break
			}
			a = min(cut[k][1], end)
			k++
		}
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

// clipRuns returns the parts of the sorted runs within [start, end).
func clipRuns(runs []image.PageRun, start, end uint64) []image.PageRun {
	var out []image.PageRun
	for _, r := range runs {
		a, b := max(r.Addr, start), min(r.Addr+r.Count*image.PageSize, end)
		if a < b {
			out = append(out, image.PageRun{Addr: a, Count: (b - a) / image.PageSize, FileOff: r.FileOff + int64(a-r.Addr), Depth: r.Depth, Pid: r.Pid})
		}
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
