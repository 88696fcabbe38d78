package mem

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
	"golang.org/x/sys/unix"
)

// SharedDirty is what dirty tracking knows, for one incremental dump of
// a tree, of the shared memory objects its processes map (shared
// anonymous memory, by shmem inode; SysV segments, by shmid): the pages of
// each object (as offsets in it) written through any view since the
// parent image, or that the object must be saved whole.
//
// The write-protect bit that tracking uses is in each view's page table:
// a page written through one process's view is reported written only in
// that view. So every view of every process is scanned (ScanShared) before
// any page is copied, and the union, in object offsets, tells the
// object's first view (the one that saves its pages) what changed.
//
// An object is saved whole when one of its views cannot be trusted: a
// view of a process not tracked since the parent image, a view not
// registered (mapped or moved since: the kernel drops the registration
// with the move), or an fd of the tree open on the object (opened through
// /proc/PID/map_files): write(2) through an fd changes pages without
// touching any page table, so no scan sees it.
type SharedDirty struct {
	objs map[shmKey]*shmDirty
	// views says, for the log, what the scan of each view found.
	views []string
	// done is closed when the search for processes outside the tree that
	// map the objects (outside) has ended; it runs while the dump goes on.
	done chan struct{}
}

// wait waits for the search of processes outside the tree.
func (sd *SharedDirty) wait() {
	if sd.done != nil {
		<-sd.done
	}
}

// shmKey names a shared memory object: a shmem inode, or a SysV shmid.
type shmKey struct {
	sysv bool
	id   uint64
}

type shmDirty struct {
	whole bool
	why   string
	dirty [][2]uint64 // offsets in the object; sorted and joined by ScanShared
}

// shmView reports whether m is a view of a shared memory object dirty
// tracking covers, and which.
func shmView(m *procfs.Mapping) (shmKey, bool) {
	switch {
	case !m.Shared || m.Inode == 0:
		return shmKey{}, false
	case m.Path == "/dev/zero (deleted)" || strings.HasPrefix(m.Path, "[anon_shmem:"):
		return shmKey{id: m.Inode}, true
	case strings.HasPrefix(m.Path, "/SYSV"):
		return shmKey{sysv: true, id: m.Inode}, true
	}
	return shmKey{}, false
}

// vmaKey is shmView for an image VMA.
func vmaKey(v *image.VMA) (shmKey, bool) {
	switch {
	case v.Kind == image.KindSharedAnon && v.Inode != 0:
		return shmKey{id: v.Inode}, true
	case v.Kind == image.KindSysV:
		return shmKey{sysv: true, id: v.Inode}, true
	}
	return shmKey{}, false
}

// ScanShared scans, in the frozen tree of live processes pids, every view
// of shared memory for the pages written since the parent image, without
// protecting them again (the dump protects each view after its process's
// copy). tracked says whether a process is tracked since the parent
// image.
func ScanShared(pids []int, tracked func(pid int) bool) (*SharedDirty, error) {
	sd := &SharedDirty{objs: map[shmKey]*shmDirty{}}
	for _, pid := range pids {
		maps, err := procfs.ReadMaps(pid)
		if err != nil {
			return nil, err
		}
		var sc *track.Scanner
		for i := range maps {
			m := &maps[i]
			key, ok := shmView(m)
			if !ok {
				continue
			}
			o := sd.objs[key]
			if o == nil {
				o = &shmDirty{}
				sd.objs[key] = o
			}
			if o.whole {
				continue
			}
			if !tracked(pid) {
				o.whole, o.why = true, fmt.Sprintf("mapped by %d, not tracked since the parent image", pid)
				continue
			}
			if sc == nil {
				if sc, err = track.OpenScanner(pid); err != nil {
					return nil, err
				}
				defer sc.Close()
			}
			written, err := sc.Peek(m.Start, m.End)
			if errors.Is(err, track.ErrNotRegistered) {
				o.whole, o.why = true, fmt.Sprintf("view %#x-%#x of %d mapped or moved since the parent image", m.Start, m.End, pid)
				continue
			}
			if err != nil {
				return nil, err
			}
			// A page whose protection is gone (its page-table entry dropped
			// after a write, or the page table itself freed) may have been
			// written: the object keeps the data.
			empty, err := sc.Empty(m.Start, m.End)
			if err != nil {
				return nil, err
			}
			sd.views = append(sd.views, fmt.Sprintf("view %#x-%#x of %d (%s): %d pages written, %d without protection",
				m.Start, m.End, pid, m.Path, rangePages(written), rangePages(empty)))
			for _, r := range append(written, empty...) {
				o.dirty = append(o.dirty, [2]uint64{m.Offset + (r[0] - m.Start), m.Offset + (r[1] - m.Start)})
			}
		}
		if err := sd.fdsOn(pid); err != nil {
			return nil, err
		}
	}
	for _, o := range sd.objs {
		o.dirty = joinRanges(o.dirty)
	}
	// Reading the maps of every process of the machine takes tens of
	// milliseconds: it runs beside the dump's injections, and the first
	// object asked for waits for it.
	sd.done = make(chan struct{})
	go func() {
		defer close(sd.done)
		if err := sd.outside(pids); err != nil {
			for key, o := range sd.objs {
				if !key.sysv && !o.whole {
					o.whole, o.why = true, err.Error()
				}
			}
		}
	}()
	return sd, nil
}

// outside marks whole every shared anonymous memory object of sd that a
// process outside the tree (pids) maps: its writes are not tracked. (A
// SysV segment attached outside the tree is refused by every dump.) It
// reads the maps of every process of the machine, only when the tree has
// shared anonymous memory that would be saved incrementally.
func (sd *SharedDirty) outside(pids []int) error {
	want := map[uint64]*shmDirty{}
	for key, o := range sd.objs {
		if !key.sysv && !o.whole {
			want[key.id] = o
		}
	}
	if len(want) == 0 {
		return nil
	}
	inTree := map[int]bool{}
	for _, p := range pids {
		inTree[p] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || inTree[pid] || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/maps")
		if err != nil || !(strings.Contains(string(b), "/dev/zero (deleted)") || strings.Contains(string(b), "[anon_shmem:")) {
			continue // gone, or no shared anonymous memory
		}
		maps, err := procfs.ParseMaps(strings.NewReader(string(b)))
		if err != nil {
			continue
		}
		for i := range maps {
			if key, ok := shmView(&maps[i]); ok && !key.sysv && want[key.id] != nil && !want[key.id].whole {
				want[key.id].whole, want[key.id].why = true, fmt.Sprintf("also mapped by process %d outside the tree", pid)
			}
		}
	}
	return nil
}

// fdsOn marks whole every object of sd that an fd of pid is open on.
func (sd *SharedDirty) fdsOn(pid int) error {
	if len(sd.objs) == 0 {
		return nil
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list fds of %d: %w", pid, err)
	}
	for _, e := range ents {
		link, err := os.Readlink(dir + e.Name())
		if err != nil || !(link == "/dev/zero (deleted)" || strings.HasPrefix(link, "/SYSV") || strings.HasPrefix(link, "/[anon_shmem:") || strings.HasPrefix(link, "[anon_shmem:")) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(dir+e.Name(), &st); err != nil {
			continue // closed meanwhile
		}
		key := shmKey{sysv: strings.HasPrefix(link, "/SYSV"), id: st.Ino} // a SysV segment's inode number is its shmid
		if o := sd.objs[key]; o != nil && !o.whole {
			o.whole, o.why = true, fmt.Sprintf("fd %s of %d is open on it (write(2) is not tracked)", e.Name(), pid)
		}
	}
	return nil
}

// object returns the dirty record of the object v views, or nil when the
// object must be saved whole (or sd is nil).
func (sd *SharedDirty) object(v *image.VMA) *shmDirty {
	if sd == nil {
		return nil
	}
	sd.wait()
	key, ok := vmaKey(v)
	if !ok {
		return nil
	}
	o := sd.objs[key]
	if o == nil || o.whole {
		return nil
	}
	return o
}

// Views returns, for the log, what the scan of each view found.
func (sd *SharedDirty) Views() []string {
	if sd == nil {
		return nil
	}
	return sd.views
}

// rangePages counts the pages of ranges rs.
func rangePages(rs [][2]uint64) uint64 {
	var n uint64
	for _, r := range rs {
		n += (r[1] - r[0]) / image.PageSize
	}
	return n
}

// Whole returns, for the log, why objects are saved whole (once every
// search has ended).
func (sd *SharedDirty) Whole() []string {
	if sd == nil {
		return nil
	}
	sd.wait()
	var out []string
	for key, o := range sd.objs {
		if o.whole {
			what := "shared memory inode"
			if key.sysv {
				what = "SysV shmid"
			}
			out = append(out, fmt.Sprintf("%s %d: %s", what, key.id, o.why))
		}
	}
	sort.Strings(out)
	return out
}

// sharedIncrRuns saves the pages of the shared view v that it saves (the
// object's data within v, minus the part covered by the object's first
// view when v is a later one) that were written since the parent image
// through any view, or that the parent image does not hold; the others it
// takes from the parent.
func sharedIncrRuns(pid int, v *image.VMA, o *shmDirty, covered [2]uint64, inc *Incr, cp *copier) error {
	data, err := sharedData(pid, *v)
	if err != nil {
		return err
	}
	if v.ShareOf != nil {
		// Only what lies outside the first view's range is v's to save.
		lo, hi := v.Start, v.Start
		if covered[0] > v.Offset {
			lo = v.Start + covered[0] - v.Offset
		}
		if covered[1] > v.Offset {
			hi = v.Start + covered[1] - v.Offset
		}
		if lo < hi {
			data = cutRanges(data, [][2]uint64{{lo, hi}})
		}
	}
	var dirty [][2]uint64
	for _, r := range o.dirty {
		a, b := max(r[0], v.Offset), min(r[1], v.Offset+(v.End-v.Start))
		if a < b {
			dirty = append(dirty, [2]uint64{v.Start + a - v.Offset, v.Start + b - v.Offset})
		}
	}
	return emitIncr(v, data, cutRanges(data, dirty), inc, cp)
}

// fileIncrRuns saves the copied-on-write pages of the tracked private file
// mapping v written since the parent image, or that the parent image does
// not hold, and takes the others from the parent. Pages backed by the file
// again (dropped since: a protected page leaves a marker) are not saved.
func fileIncrRuns(pm *procfs.Pagemap, v *image.VMA, inc *Incr, entries *[]uint64, cp *copier) error {
	written, err := inc.written(v.Start, v.End)
	if err != nil {
		return err
	}
	var keep, sure [][2]uint64
	add := func(rs *[][2]uint64, addr uint64) {
		if k := len(*rs) - 1; k >= 0 && (*rs)[k][1] == addr {
			(*rs)[k][1] += image.PageSize
		} else {
			*rs = append(*rs, [2]uint64{addr, addr + image.PageSize})
		}
	}
	for start := v.Start; start < v.End; {
		end := min(v.End, start+scanBatch*image.PageSize)
		if *entries, err = pm.Read(start, end, *entries); err != nil {
			return err
		}
		for i, e := range *entries {
			addr := start + uint64(i)*image.PageSize
			switch {
			case e&procfs.PM_FILE != 0 || isMarker(e):
			case e&procfs.PM_PRESENT != 0:
				add(&keep, addr)
				add(&sure, addr)
			case e&procfs.PM_SWAP != 0:
				// A swapped copy, or (frame hidden) maybe a marker: copied,
				// which is right either way.
				add(&keep, addr)
				if e&swapFrame != 0 {
					add(&sure, addr)
				}
			}
		}
		start = end
	}
	return emitIncr(v, keep, cutRanges(sure, written), inc, cp)
}

// swapFrame are the pagemap bits of a swap entry's type and offset (0
// when the reader may not see them).
const swapFrame = 1<<55 - 1

// isMarker reports whether pagemap entry e is a userfaultfd write-protect
// marker (swap type SWP_PTE_MARKER, the last of the 32 types): no page,
// the mapping's own content (zero, or the file's) shows there.
func isMarker(e uint64) bool {
	return e&procfs.PM_SWAP != 0 && e&swapFrame != 0 && e&0x1f == 0x1f
}

// emitIncr records v's pages for an incremental dump: of keep (the pages
// to save, sorted ranges), those within refable that the parent image
// holds for the same object at the same place are taken from it, the rest
// are copied.
func emitIncr(v *image.VMA, keep, refable [][2]uint64, inc *Incr, cp *copier) error {
	var refs []image.PageRun
	if inc.Parent != nil && len(refable) > 0 {
		refs = cutRuns(objectRuns(inc.Parent, v), complement(refable, v.Start, v.End))
	}
	copies := cutRanges(keep, runRanges(refs))
	// Both lists are sorted and disjoint: the copies, saved in address
	// order from the copier's offset on, merged with the refs.
	m := incrMerge{pages: v.Pages, written: copies, off: cp.offset()}
	for _, r := range refs {
		m.take(r)
	}
	v.Pages = m.finish()
	for _, w := range copies {
		if err := cp.add(w[0], w[1]-w[0], false); err != nil { // shared memory: pinning unshares nothing
			return err
		}
	}
	return nil
}

// objectRuns returns the runs of parent within v's range whose mapping
// showed the same object at the same offsets, one image deeper.
func objectRuns(parent *image.Process, v *image.VMA) []image.PageRun {
	var out []image.PageRun
	for _, pv := range parent.VMAs {
		if pv.End <= v.Start || pv.Start >= v.End || pv.Kind != v.Kind || pv.Inode != v.Inode || pv.Dev != v.Dev ||
			pv.Shared != v.Shared || pv.Start-pv.Offset != v.Start-v.Offset {
			continue
		}
		for _, r := range pv.Pages {
			a, b := max(r.Addr, v.Start), min(r.Addr+r.Count*image.PageSize, v.End)
			if a < b {
				p := runPart(r, a, b)
				p.Depth++
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// complement returns the ranges of [start, end) outside the sorted
// disjoint ranges rs.
func complement(rs [][2]uint64, start, end uint64) [][2]uint64 {
	var out [][2]uint64
	for _, r := range rs {
		if r[0] > start {
			out = append(out, [2]uint64{start, min(r[0], end)})
		}
		start = max(start, r[1])
	}
	if start < end {
		out = append(out, [2]uint64{start, end})
	}
	return out
}

// joinRanges sorts rs and joins overlapping or adjacent ranges.
func joinRanges(rs [][2]uint64) [][2]uint64 {
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out [][2]uint64
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && r[0] <= out[k][1] {
			out[k][1] = max(out[k][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
