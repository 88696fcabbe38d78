package mem

import (
	"errors"
	"fmt"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Lazy reports whether the saved pages of v may be left out of a lazy
// restore and brought in through userfaultfd: private anonymous memory
// (anon, heap, stack) with pages, except where the kernel or restore
// would populate it before the process runs, or where a forked child must
// not see the image's pages: mlocked (mlock populates), wipe-on-fork (a
// child forked later must read zeros there) and MAP_DROPPABLE memory.
// Everything else (shared memory, SysV segments, file mappings and their
// copied-on-write pages, memfds) is written at restore as usual. The
// Remote spans of a post-copy image count as saved pages here (they are
// only ever in mappings like these, see image.RemoteKind).
func Lazy(v *image.VMA) bool {
	if v.Shared || v.ShareOf != nil || (len(v.Pages) == 0 && len(v.Remote) == 0) {
		return false
	}
	switch v.Kind {
	case image.KindAnon, image.KindHeap, image.KindStack:
	default:
		return false
	}
	return !v.HasVmFlag(image.VmLocked) && !v.HasVmFlag(image.VmWipeOnFork) && !v.HasVmFlag(image.VmDroppable)
}

// LazyRanges returns, for a lazy restore of p, the mappings to register
// (whole Lazy VMAs) and the runs of saved pages they hold but for the
// pages written at restore all the same (LazyEager), both sorted; runs
// that touch within a mapping are one range.
func LazyRanges(p *image.Process) (vmas, runs [][2]uint64) {
	eager := LazyEager(p)
	for i := range p.VMAs {
		v := &p.VMAs[i]
		if !Lazy(v) {
			continue
		}
		vmas = append(vmas, [2]uint64{v.Start, v.End})
		first := len(runs)
		// Not through cutRuns: a copy of every run of a 1 GiB chain
		// (thousands) cost 3-20 ms in a loaded restore (its allocation
		// and the GC work it brought), for the few pages of eager.
		for _, r := range v.Pages {
			a, end := r.Addr, r.Addr+r.Count*image.PageSize
			for _, e := range eager { // sorted, disjoint, few
				if e[1] <= a || e[0] >= end {
					continue
				}
				if e[0] > a {
					runs = appendRange(runs, first, a, e[0])
				}
				a = e[1]
				if a >= end {
					break
				}
			}
			if a < end {
				runs = appendRange(runs, first, a, end)
			}
		}
		// A post-copy image's pages left with the source (v.Pages is
		// empty there).
		for _, s := range v.Remote {
			runs = appendRange(runs, first, s.Addr, s.End())
		}
	}
	return vmas, runs
}

// appendRange appends [a, b) to the sorted ranges rs, joined to the last
// one when it ends at a and is at index first or after (of the same
// mapping: a range must never cross a mapping's end, where one
// UFFDIO_COPY cannot go). The runs of a chain's images touch each
// other (an increment's pages cut its parent's runs): joined, the lazy
// restore registers, tracks and fetches a few ranges instead of one per
// run.
func appendRange(rs [][2]uint64, first int, a, b uint64) [][2]uint64 {
	if n := len(rs) - 1; n >= first && rs[n][1] == a {
		rs[n][1] = b
		return rs
	}
	return append(rs, [2]uint64{a, b})
}

// LazyEager returns the pages of p a lazy restore writes at once even in
// Lazy mappings (sorted, page aligned): those the kernel writes while the
// restore is still injecting calls, so that no page has to be fetched
// before the processes run (a post-copy source serves none before then).
// These are the threads' rseq areas (registering one makes the kernel
// write the CPU number into it on the way back to user space).
func LazyEager(p *image.Process) [][2]uint64 {
	var out [][2]uint64
	for _, th := range p.Threads {
		if th.Rseq == nil || th.Rseq.Ptr == 0 {
			continue
		}
		a := th.Rseq.Ptr &^ (image.PageSize - 1)
		b := (th.Rseq.Ptr + uint64(max(th.Rseq.Len, 32)) + image.PageSize - 1) &^ (image.PageSize - 1)
		out = append(out, [2]uint64{a, b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	var merged [][2]uint64
	for _, r := range out {
		if n := len(merged) - 1; n >= 0 && r[0] <= merged[n][1] {
			merged[n][1] = max(merged[n][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// LazyEagerRuns returns the runs of v, a Lazy mapping of p, that a lazy
// restore writes at once (LazyEager).
func LazyEagerRuns(p *image.Process, v *image.VMA) []image.PageRun {
	return withinRuns(v.Pages, LazyEager(p))
}

// withinRuns returns the parts of runs inside the sorted, disjoint
// ranges keep.
func withinRuns(runs []image.PageRun, keep [][2]uint64) []image.PageRun {
	var out []image.PageRun
	for _, r := range runs {
		end := r.Addr + r.Count*image.PageSize
		for _, k := range intersect(r.Addr, end, keep) {
			out = append(out, image.PageRun{Addr: k[0], Count: (k[1] - k[0]) / image.PageSize, FileOff: r.FileOff + int64(k[0]-r.Addr), Depth: r.Depth, Pid: r.Pid})
		}
	}
	return out
}

// PageSource gives the pages of the image's processes from its page
// files (the chain's included): the lazy.Source of a local lazy restore.
type PageSource struct {
	procs map[int]*image.Process
	pages PageFiles
	check CheckFunc
}

// CheckFunc verifies bytes [off, off+n) of the page file of process pid
// in the image at depth of the chain before they are used.
type CheckFunc func(pid, depth int, off, n int64) error

// NewPageSource returns the source of procs' pages in pages, verified
// with check (nil: verified already).
func NewPageSource(procs []image.Process, pages PageFiles, check CheckFunc) *PageSource {
	s := &PageSource{procs: map[int]*image.Process{}, pages: pages, check: check}
	for i := range procs {
		s.procs[procs[i].Pid] = &procs[i]
	}
	return s
}

// Fetch fills buf with the saved pages of image process pid at addr;
// pages no run holds read as zero.
func (s *PageSource) Fetch(pid int, addr uint64, buf []byte) error {
	p := s.procs[pid]
	if p == nil {
		return fmt.Errorf("no process %d in the image", pid)
	}
	end := addr + uint64(len(buf))
	i := sort.Search(len(p.VMAs), func(i int) bool { return p.VMAs[i].End > addr })
	clear(buf)
	for ; i < len(p.VMAs) && p.VMAs[i].Start < end; i++ {
		v := &p.VMAs[i]
		j := sort.Search(len(v.Pages), func(j int) bool { return v.Pages[j].Addr+v.Pages[j].Count*image.PageSize > addr })
		for ; j < len(v.Pages) && v.Pages[j].Addr < end; j++ {
			r := v.Pages[j]
			a, b := max(addr, r.Addr), min(end, r.Addr+r.Count*image.PageSize)
			files := s.pages[r.Owner(pid)]
			off := r.FileOff + int64(a-r.Addr)
			if r.Depth >= len(files) || off+int64(b-a) > int64(len(files[r.Depth])) {
				return fmt.Errorf("run at %#x of %d in image %d of the chain (page file of %d) not loaded", r.Addr, pid, r.Depth, r.Owner(pid))
			}
			// One call maps the file's pages in (a page cache or tmpfs
			// file), instead of a page fault each.
			src := files[r.Depth][off : off+int64(b-a)]
			// EFAULT: the file is shorter than mapped (truncated by its
			// owner): the copy below would die of SIGBUS.
			if err := unix.Madvise(src, unix.MADV_POPULATE_READ); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("page file of %d at offset %d (image %d of the chain): %w", r.Owner(pid), off, r.Depth, err)
			}
			if s.check != nil {
				if err := s.check(r.Owner(pid), r.Depth, off, int64(b-a)); err != nil {
					return err
				}
			}
			copy(buf[a-addr:b-addr], files[r.Depth][off:])
		}
	}
	return nil
}
