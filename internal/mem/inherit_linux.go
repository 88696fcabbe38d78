package mem

import (
	"fmt"
	"slices"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// PageFiles are the mapped page files of a restore: by the pid (in the
// image) of the process whose page file it is, then by depth in the image
// chain (0: the image itself; see image.PageRun).
type PageFiles map[int][][]byte

// inheritPlan is what a process forked from its restored parent keeps of
// the parent's memory.
type inheritPlan struct {
	// kept are the address ranges of the process's private mappings kept
	// from the parent (the parent's mapping there is one the process
	// has too), sorted and disjoint.
	kept [][2]uint64
	// inherited are the pages within kept whose bytes are the parent's
	// (the same run of the same page file: saved once at dump, shared
	// copy-on-write after the restore), sorted and disjoint.
	inherited [][2]uint64
}

// planInherit decides, from the image alone, what process p keeps of the
// memory of parent, restored before p was forked from it: each part of a
// private mapping of p that lies in a compatible mapping of parent (see
// compatible) and holds pages both took from the same place of the same
// page file.
func planInherit(p, parent *image.Process) inheritPlan {
	var plan inheritPlan
	if parent == nil {
		return plan
	}
	for i := range p.VMAs {
		v := &p.VMAs[i]
		if !keepable(v) {
			continue
		}
		for j := range parent.VMAs {
			pv := &parent.VMAs[j]
			a, b := max(v.Start, pv.Start), min(v.End, pv.End)
			if a >= b || !compatible(v, pv) {
				continue
			}
			same := sameRuns(v.Pages, p.Pid, pv.Pages, parent.Pid, a, b)
			if len(same) == 0 {
				continue
			}
			plan.kept = append(plan.kept, [2]uint64{a, b})
			plan.inherited = append(plan.inherited, same...)
		}
	}
	return plan
}

// keepable reports whether a mapping may be kept from the parent after a
// fork: private memory that the fork copies as it is.
func keepable(v *image.VMA) bool {
	return privateMemory(v) && !v.HasVmFlag(image.VmDontFork) && !v.HasVmFlag(image.VmWipeOnFork) && !v.HasVmFlag(image.VmDroppable)
}

// compatible reports whether the mapping pv of the parent, inherited by
// fork, can stand for the child's mapping v where both overlap: the same
// kind, name and flags, and for a file mapping the same file at the same
// offset for each address. Protections may differ (set after).
func compatible(v, pv *image.VMA) bool {
	if !keepable(pv) || v.Kind != pv.Kind || v.Name != pv.Name || v.GrowsDown != pv.GrowsDown || !slices.Equal(v.VmFlags, pv.VmFlags) {
		return false
	}
	if v.FileBacked() {
		return v.Path == pv.Path && v.Dev == pv.Dev && v.Inode == pv.Inode && int64(v.Offset)-int64(v.Start) == int64(pv.Offset)-int64(pv.Start)
	}
	return true
}

// sameRuns returns the ranges within [a, b) where the runs of the child
// (pid) and of the parent (ppid) name the same pages of the same page
// file: the pages the child has as the parent restored them.
func sameRuns(child []image.PageRun, pid int, parent []image.PageRun, ppid int, a, b uint64) [][2]uint64 {
	var out [][2]uint64
	j := sort.Search(len(parent), func(j int) bool { return parent[j].Addr+parent[j].Count*image.PageSize > a })
	for _, c := range child {
		ca, cb := max(c.Addr, a), min(c.Addr+c.Count*image.PageSize, b)
		if ca >= cb || c.Pid == 0 {
			continue
		}
		for k := j; k < len(parent) && parent[k].Addr < cb; k++ {
			pr := parent[k]
			s, e := max(ca, pr.Addr), min(cb, pr.Addr+pr.Count*image.PageSize)
			if s >= e || pr.Owner(ppid) != c.Owner(pid) || pr.Depth != c.Depth ||
				pr.FileOff-int64(pr.Addr) != c.FileOff-int64(c.Addr) {
				continue
			}
			if n := len(out) - 1; n >= 0 && out[n][1] == s {
				out[n][1] = e
			} else {
				out = append(out, [2]uint64{s, e})
			}
		}
	}
	return out
}

// subtract returns the parts of [a, b) outside the sorted, disjoint
// ranges rs.
func subtract(a, b uint64, rs [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	i := sort.Search(len(rs), func(i int) bool { return rs[i][1] > a })
	for ; a < b && i < len(rs) && rs[i][0] < b; i++ {
		if rs[i][0] > a {
			out = append(out, [2]uint64{a, rs[i][0]})
		}
		a = max(a, rs[i][1])
	}
	if a < b {
		out = append(out, [2]uint64{a, b})
	}
	return out
}

// intersect returns the parts of the sorted, disjoint ranges rs within
// [a, b).
func intersect(a, b uint64, rs [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	i := sort.Search(len(rs), func(i int) bool { return rs[i][1] > a })
	for ; i < len(rs) && rs[i][0] < b; i++ {
		out = append(out, [2]uint64{max(a, rs[i][0]), min(b, rs[i][1])})
	}
	return out
}

// dropInherited unmaps from r, forked from its restored parent, every
// mapping outside plan.kept except the scratch area and [vsyscall] (which
// cannot go): the parent's other memory, its shared mappings and its
// vdso, which the process maps as its own image says.
func dropInherited(r *ptrace.Remote, plan inheritPlan) error {
	maps, err := procfs.ReadMaps(r.Pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Start == r.Scratch || m.Path == "[vsyscall]" {
			continue
		}
		for _, g := range subtract(m.Start, m.End, plan.kept) {
			if _, err := r.Syscall(unix.SYS_MUNMAP, g[0], g[1]-g[0]); err != nil {
				return fmt.Errorf("unmap the parent's mapping %#x-%#x %s: %w", g[0], g[1], m.Path, err)
			}
		}
	}
	return nil
}

// mapKept recreates the mapping v around the parts of it kept from the
// parent: the rest is mapped as usual; in the kept parts, the pages the
// process does not share with the parent are dropped (zero again, or the
// file's again for a file mapping) and the protection made the one pages
// are written with.
func mapKept(r *ptrace.Remote, v *image.VMA, kept, inherited [][2]uint64, open OpenFunc, shared *Shared) error {
	for _, g := range subtract(v.Start, v.End, kept) {
		sub := *v
		sub.Start, sub.End = g[0], g[1]
		if sub.FileBacked() {
			sub.Offset += g[0] - v.Start
		}
		if err := mapVMA(r, &sub, open, shared); err != nil {
			return err
		}
	}
	for _, k := range intersect(v.Start, v.End, kept) {
		for _, g := range subtract(k[0], k[1], inherited) {
			if _, err := r.Syscall(unix.SYS_MADVISE, g[0], g[1]-g[0], unix.MADV_DONTNEED); err != nil {
				return fmt.Errorf("drop the parent's pages %#x-%#x: %w", g[0], g[1], err)
			}
		}
		if _, err := r.Syscall(unix.SYS_MPROTECT, k[0], k[1]-k[0], uint64(mapProt(v))); err != nil {
			return fmt.Errorf("mprotect the parent's memory %#x-%#x: %w", k[0], k[1], err)
		}
	}
	return nil
}
