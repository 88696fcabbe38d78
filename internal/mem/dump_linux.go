package mem

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/track"
	"golang.org/x/sys/unix"
)

// Dump reads the mappings of the stopped process pid, decides which pages
// to save and copies them into pw, recording where each run lands. It
// returns the image's VMAs and the bytes of the process's [vdso].
//
// Saved: every page that was ever populated in private anonymous memory
// (heap, stack …), every page that exists in shared anonymous memory, and
// the pages of
// private file
// mappings that differ from the file (copied-on-write or swapped). Pages
// still backed by the file, and shared file mappings, come back from the
// file on restore.
//
// inc (nil: no tracking) makes the dump aware of dirty tracking: see Incr.
// forked (nil: none) is the process's parent in the image, already dumped:
// pages still shared with it copy-on-write are recorded as its runs.
func Dump(pid int, pw *image.PageWriter, shared *Shared, inc *Incr, forked *Forked) ([]image.VMA, []byte, error) {
	return waitDump(dumpLater(pid, pw, shared, inc, forked, false, false))
}

// DumpRemote is Dump for a post-copy migration: the pages of private
// anonymous memory are not copied but recorded as the VMAs' Remote spans
// (image.PageSpan), every page that exists (present or swapped, as Dump
// would save them); the rest is saved as Dump saves it. No dirty tracking,
// no copy-on-write sharing with a parent: each process's pages are
// fetched from it.
func DumpRemote(pid int, pw *image.PageWriter, shared *Shared) ([]image.VMA, []byte, error) {
	return waitDump(dumpLater(pid, pw, shared, nil, nil, true, false))
}

// waitDump waits for the writes of a dumpLater and returns its result.
func waitDump(vmas []image.VMA, vdso []byte, _ int64, wait func() error, err error) ([]image.VMA, []byte, error) {
	if werr := wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, nil, err
	}
	return vmas, vdso, nil
}

// DumpLater is Dump, except that when it returns the pages are copied out
// of the process but perhaps not all written to pw yet: size is what pw
// will hold, and wait (never nil; call it in any case) waits for the
// writes and returns their error. pw's offset and checksums are complete
// once wait returned. A dump that leaves the tree running calls it after
// the release. Pages that fit in the copy buffers (copyBuffers of
// copyBuf bytes) are written only when wait is called.
func DumpLater(pid int, pw *image.PageWriter, shared *Shared, inc *Incr, forked *Forked) (vmas []image.VMA, vdso []byte, size int64, wait func() error, err error) {
	return dumpLater(pid, pw, shared, inc, forked, false, true)
}

// dumpLater is DumpLater; with remote (DumpRemote) the pages of private
// anonymous memory are recorded, not copied. With hold (DumpLater) the
// page file is written only once the copy buffers run out or wait is
// called (copier.hold): a small dump writes nothing while frozen.
func dumpLater(pid int, pw *image.PageWriter, shared *Shared, inc *Incr, forked *Forked, remote, hold bool) (vmas []image.VMA, vdso []byte, size int64, wait func() error, err error) {
	wait = func() error { return nil }
	// smaps on a goroutine of its own, the layout from maps: see collect.
	flags := readSmaps(pid)
	defer flags.wait()
	layout, err := procfs.ReadMaps(pid)
	if err != nil {
		return nil, nil, 0, wait, err
	}
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return nil, nil, 0, wait, err
	}
	defer pm.Close()
	cs, err := newCowScan(forked)
	if err != nil {
		return nil, nil, 0, wait, fmt.Errorf("dump memory of %d: %w", pid, err)
	}
	defer cs.close()

	var sp *spare
	if hold {
		// Held buffers stay until the release: the next process
		// copies into the rest of this one's last (spare).
		sp = shared.spare()
	}
	cp := newCopier(pid, pw, sp)
	cp.hold = hold
	cp.queued = pw.Offset() // pre-copy rounds may have written the file's start
	var sc *track.Scanner
	if remote {
		if sc, err = track.OpenScanner(pid); err != nil {
			return nil, nil, 0, wait, err
		}
		defer sc.Close()
	}
	vmas, vdso, err = collect(pid, layout, flags, pm, cp, shared, inc, cs, sc)
	if err == nil {
		err = cp.flush()
	}
	if err != nil {
		if cerr := cp.close(); errors.Is(err, errWriteFailed) && cerr != nil {
			err = cerr // the writer's own error says what failed
		}
		return nil, nil, 0, wait, err
	}
	if cp.memFile != nil {
		_ = cp.memFile.Close()
		cp.memFile = nil
	}
	sp.lend(cp)
	return vmas, vdso, cp.queued, cp.close, nil
}

// collect classifies the mappings of layout (/proc/PID/maps, read frozen:
// no page walk) and saves their pages; with sc (DumpRemote) the pages of
// private anonymous memory are recorded as Remote spans instead. flags is
// /proc/PID/smaps, being read meanwhile (the kernel walks every page table
// for it): private anonymous memory, which no VmFlags keep rtcr from
// reading, is saved before it arrives, the rest after (see early,
// joinLayout and earlyVMA.join in layout_linux.go).
func collect(pid int, layout []procfs.Mapping, flags *smapsRead, pm *procfs.Pagemap, cp *copier, shared *Shared, inc *Incr, cs *cowScan, sc *track.Scanner) ([]image.VMA, []byte, error) {
	c := &collector{pid: pid, pm: pm, cp: cp, shared: shared, inc: inc, cs: cs, sc: sc}
	saved := make([]*earlyVMA, len(layout))
	var earlyErr error
	for i, m := range layout {
		if !early(m) {
			continue
		}
		if saved[i], earlyErr = c.saveEarly(m); earlyErr != nil {
			break
		}
	}
	maps, err := flags.join(pid, layout)
	if err != nil {
		return nil, nil, err
	}
	if earlyErr != nil {
		// A mapping refused for its VmFlags says more than a read of
		// it that failed.
		for i, m := range maps {
			if early(layout[i]) {
				inc.stripTracking(&m)
				if _, _, err := classify(pid, m); err != nil {
					return nil, nil, err
				}
			}
		}
		return nil, nil, earlyErr
	}
	var vmas []image.VMA
	for i, m := range maps {
		tracked := inc.stripTracking(&m)
		v, ok, err := classify(pid, m)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if e := saved[i]; e != nil {
			if err := e.join(pid, &v, tracked, inc); err != nil {
				return nil, nil, err
			}
		} else if err := c.savePages(&v, tracked); err != nil {
			return nil, nil, err
		}
		inc.list(&v, tracked)
		vmas = append(vmas, v)
	}
	if shared != nil {
		if err := shared.checkAttachments(pid, vmas); err != nil {
			return nil, nil, err
		}
	}
	return vmas, c.vdso, nil
}

// collector is what saving the pages of one process's mappings needs.
type collector struct {
	pid     int
	pm      *procfs.Pagemap
	cp      *copier
	shared  *Shared
	inc     *Incr
	cs      *cowScan
	sc      *track.Scanner
	entries []uint64 // pagemap entries, reused
	vdso    []byte   // the bytes of [vdso]
}

// savePages saves the pages of the mapping v (classified; tracked: its
// "uw" flag was rtcr's), appending its runs to v.Pages.
func (c *collector) savePages(v *image.VMA, tracked bool) error {
	pid := c.pid
	if v.Kind == image.KindVDSO {
		c.vdso = make([]byte, v.End-v.Start)
		if err := ptrace.ReadMem(pid, v.Start, c.vdso); err != nil {
			return fmt.Errorf("read [vdso] of %d: %w", pid, err)
		}
	}
	if v.Kind == image.KindMemfd || v.Kind == image.KindDeleted {
		if err := c.shared.dumpFile(pid, v); err != nil {
			return err
		}
	}
	sysvHome := false
	var err error
	if v.Kind == image.KindSysV {
		if sysvHome, err = c.shared.sysvMapping(pid, v); err != nil {
			return err
		}
	}
	var covered [2]uint64
	if v.ShareOf, covered, err = c.shared.share(pid, v); err != nil {
		return err
	}
	keep, err := pageFilter(pid, *v)
	if err != nil {
		return fmt.Errorf("mapping %#x-%#x of %d: %w", v.Start, v.End, pid, err)
	}
	if v.ShareOf != nil {
		keep = outside(*v, covered, keep)
	}
	if v.Kind == image.KindSysV && !sysvHome {
		keep = nil // the segment's first attachment saves its pages
	}
	if c.inc != nil && Trackable(v) {
		done, err := dumpTracked(pid, c.pm, v, tracked, covered, keep != nil, c.inc, &c.entries, c.cp)
		if err != nil {
			return fmt.Errorf("written pages of mapping %#x-%#x of %d: %w", v.Start, v.End, pid, err)
		}
		if done {
			keep = nil
		}
	}
	if keep != nil && c.sc != nil && image.RemoteKind(v) {
		if err := scanRemote(c.pm, c.sc, v, keep, &c.entries); err != nil {
			return fmt.Errorf("pages of mapping %#x-%#x of %d: %w", v.Start, v.End, pid, err)
		}
		keep = nil
	}
	if keep != nil {
		vcs := c.cs
		if !privateMemory(v) {
			vcs = nil
		}
		if err := scanRuns(c.pm, v, keep, &c.entries, c.cp, vcs); err != nil {
			return fmt.Errorf("pages of mapping %#x-%#x of %d: %w", v.Start, v.End, pid, err)
		}
	}
	return nil
}

// list records the tracked mapping v (tracked: registered by rtcr) in
// inc's lists of what to register or protect after the copy.
func (inc *Incr) list(v *image.VMA, tracked bool) {
	if inc == nil || !Trackable(v) {
		return
	}
	r := [2]uint64{v.Start, v.End}
	switch {
	case !tracked:
		inc.Untracked = append(inc.Untracked, r)
	case sharedView(v):
		inc.Reprotect = append(inc.Reprotect, r)
	default:
		inc.TrackedRanges = append(inc.TrackedRanges, r)
	}
}

// pageFilter returns which pages of v (by address and pagemap entry) hold
// data to save, or nil when no page of v is saved.
func pageFilter(pid int, v image.VMA) (func(addr, e uint64) bool, error) {
	switch v.Kind {
	case image.KindSharedAnon, image.KindSysV:
		// Shared memory keeps its data when the process's page-table
		// entries go (MADV_DONTNEED, reclaim): pagemap cannot tell a
		// never-written page from one written and unmapped. The shared
		// object itself knows which of its pages exist.
		ranges, err := sharedData(pid, v)
		if err != nil {
			return nil, err
		}
		return func(addr, _ uint64) bool {
			i := sort.Search(len(ranges), func(i int) bool { return ranges[i][1] > addr })
			return i < len(ranges) && ranges[i][0] <= addr
		}, nil
	case image.KindAnon, image.KindHeap, image.KindStack:
		// A write-protect marker of dirty tracking is no page: zero.
		return func(_, e uint64) bool { return e&(procfs.PM_PRESENT|procfs.PM_SWAP) != 0 && !isMarker(e) }, nil
	case image.KindFile, image.KindMemfd, image.KindDeleted:
		if v.Shared {
			return nil, nil
		}
		// Private file mapping: a present page that is not a file page
		// is an anonymous copy-on-write copy; swapped pages are too, but
		// not a write-protect marker of dirty tracking (the file shows).
		return func(_, e uint64) bool {
			return (e&procfs.PM_SWAP != 0 && !isMarker(e)) || (e&procfs.PM_PRESENT != 0 && e&procfs.PM_FILE == 0)
		}, nil
	}
	return nil, nil
}

// outside narrows keep, for a view v of shared anonymous memory that is not
// its home, to the pages outside the object range covered (the home's
// pages hold the rest).
func outside(v image.VMA, covered [2]uint64, keep func(addr, e uint64) bool) func(addr, e uint64) bool {
	if keep == nil {
		return nil
	}
	return func(addr, e uint64) bool {
		off := v.Offset + (addr - v.Start)
		return (off < covered[0] || off >= covered[1]) && keep(addr, e)
	}
}

// sharedData returns the address ranges of the shared anonymous mapping v
// of pid whose pages exist in the shared object, found with
// SEEK_DATA/SEEK_HOLE on /proc/PID/map_files (reading the others would
// allocate them).
func sharedData(pid int, v image.VMA) ([][2]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.Start, v.End))
	if err != nil {
		return nil, fmt.Errorf("open shared memory: %w", err)
	}
	defer f.Close()
	var ranges [][2]uint64
	end := int64(v.Offset + (v.End - v.Start))
	for off := int64(v.Offset); off < end; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && data >= end) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("find data in shared memory: %w", err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find holes in shared memory: %w", err)
		}
		hole = min(hole, end)
		ranges = append(ranges, [2]uint64{v.Start + uint64(data) - v.Offset, v.Start + uint64(hole) - v.Offset})
		off = hole
	}
	return ranges, nil
}

// scanBatch is how many pagemap entries are read at once (2 MiB of entries
// covers 1 GiB of address space).
const scanBatch = 1 << 18

// scanRuns finds the runs of v's pages that keep accepts and queues them
// on cp, appending them to v.Pages with their page-file offsets. With cs
// (private memory of a forked process), a page still shared with the
// parent becomes a run naming the parent's copy instead.
func scanRuns(pm *procfs.Pagemap, v *image.VMA, keep func(addr, e uint64) bool, entries *[]uint64, cp *copier, cs *cowScan) error {
	for start := v.Start; start < v.End; {
		end := min(v.End, start+scanBatch*image.PageSize)
		var err error
		*entries, err = pm.Read(start, end, *entries)
		if err != nil {
			return err
		}
		var parent []uint64
		if cs != nil {
			if parent, err = cs.parentEntries(start, end, *entries); err != nil {
				return err
			}
		}
		shared := func(i int) (image.PageRun, bool) {
			if parent == nil {
				return image.PageRun{}, false
			}
			return cs.source(start+uint64(i)*image.PageSize, (*entries)[i], parent[i])
		}
		for i := 0; i < len(*entries); {
			addr := start + uint64(i)*image.PageSize
			if !keep(addr, (*entries)[i]) {
				i++
				continue
			}
			if src, ok := shared(i); ok {
				appendRun(v, src)
				i++
				continue
			}
			// A run of pages to save, all mapped exclusively by the
			// process or all possibly shared (read without unsharing
			// them, see copier.add).
			cow := candidate((*entries)[i])
			j := i + 1
			for j < len(*entries) && keep(start+uint64(j)*image.PageSize, (*entries)[j]) && candidate((*entries)[j]) == cow {
				if _, ok := shared(j); ok {
					break
				}
				j++
			}
			n := uint64(j - i)
			appendRun(v, image.PageRun{Addr: addr, Count: n, FileOff: cp.offset()})
			if err := cp.add(addr, n*image.PageSize, cow); err != nil {
				return err
			}
			i = j
		}
		start = end
	}
	return nil
}
