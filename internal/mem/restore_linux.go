package mem

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// OpenFunc opens a file of the image in the stub, as checked before (see
// files.Opener): a file mapping's path with O_RDONLY or O_RDWR, or the
// executable with O_RDONLY.
type OpenFunc func(path string, flags int) (int, error)

// Restore recreates every mapping of p inside the stub r at its original
// address, with its original protection, and writes the saved pages into
// them: pages holds the page files of the image chain (see PageFiles and
// image.PageRun). Memory shared with an earlier process of the tree is
// mapped from it (see Shared). File mappings are opened with open, memfds
// and deleted files through shared.OpenFile.
//
// parent, when not nil, is the process whose stub forked r right after
// its own Restore: r holds a copy-on-write copy of the parent's memory.
// The private mappings of p that hold pages the parent restored from the
// same place of the same page file keep them (the child shares them with
// the parent, as before the checkpoint); everything else inherited is
// unmapped or dropped first. With parent nil, r must be an empty stub.
func Restore(r *ptrace.Remote, p *image.Process, pages PageFiles, shared *Shared, open OpenFunc, parent *image.Process) error {
	return restore(r, p, pages, shared, open, parent, false)
}

// RestoreLazy is Restore for a lazy restore: the pages of Lazy mappings
// are left out (the caller registers those mappings on a userfaultfd
// before anything touches them), and a child keeps nothing of its
// parent's memory (whose lazy pages are not there to inherit): all its
// own pages come from the page files.
func RestoreLazy(r *ptrace.Remote, p *image.Process, pages PageFiles, shared *Shared, open OpenFunc, parent *image.Process) error {
	return restore(r, p, pages, shared, open, parent, true)
}

func restore(r *ptrace.Remote, p *image.Process, pages PageFiles, shared *Shared, open OpenFunc, parent *image.Process, lazy bool) error {
	var plan inheritPlan
	if parent != nil {
		if !lazy {
			plan = planInherit(p, parent)
		}
		if err := dropInherited(r, plan); err != nil {
			return fmt.Errorf("restore memory of %d: %w", r.Pid, err)
		}
	}
	if err := mapVDSO(r, p); err != nil {
		return err
	}
	for i := range p.VMAs {
		v := &p.VMAs[i]
		if isVDSOKind(v.Kind) {
			continue
		}
		var err error
		switch {
		case v.Kind == image.KindSysV:
			if v.Offset == 0 { // the attachment's first mapping
				err = attachSysV(r, p.VMAs, i)
			}
		case v.ShareOf != nil:
			err = shared.mapShared(r, v)
		case len(intersect(v.Start, v.End, plan.kept)) > 0:
			err = mapKept(r, v, plan.kept, plan.inherited, open, shared)
		default:
			if err = mapVMA(r, v, open, shared); err == nil && v.Kind == image.KindSharedAnon {
				err = sizeObject(r, v)
				shared.restoredHome(p.Pid, r, v)
			}
		}
		if err != nil {
			return fmt.Errorf("restore mapping %#x-%#x %s of %d: %w", v.Start, v.End, v.Name, r.Pid, err)
		}
	}
	if err := writePages(r.Pid, p, pages, plan.inherited, lazy); err != nil {
		return err
	}
	for i := range p.VMAs {
		v := &p.VMAs[i]
		kept := len(intersect(v.Start, v.End, plan.kept)) > 0
		if isVDSOKind(v.Kind) || (v.Prot == mapProt(v) && v.Kind != image.KindSysV && !kept) {
			continue
		}
		if _, err := r.Syscall(unix.SYS_MPROTECT, v.Start, v.End-v.Start, uint64(v.Prot)); err != nil {
			return fmt.Errorf("restore mapping %#x-%#x %s of %d: mprotect: %w", v.Start, v.End, v.Name, r.Pid, err)
		}
	}
	for i := range p.VMAs {
		v := &p.VMAs[i]
		if err := applyName(r, v); err != nil {
			return fmt.Errorf("restore mapping %#x-%#x %s of %d: %w", v.Start, v.End, v.Name, r.Pid, err)
		}
		if err := applyFlags(r, v); err != nil {
			return fmt.Errorf("restore mapping %#x-%#x %s of %d: %w", v.Start, v.End, v.Name, r.Pid, err)
		}
	}
	return nil
}

func isVDSOKind(k string) bool {
	return k == image.KindVDSO || k == image.KindVvar || k == image.KindVvarClock
}

// mapProt is the protection a VMA is first mapped with: writable when rtcr
// must write saved pages into it.
func mapProt(v *image.VMA) int {
	if len(v.Pages) > 0 {
		return v.Prot | unix.PROT_READ | unix.PROT_WRITE
	}
	return v.Prot
}

// mapVMA creates one mapping at its address; MAP_FIXED_NOREPLACE makes a
// collision an error instead of silently replacing memory.
func mapVMA(r *ptrace.Remote, v *image.VMA, open OpenFunc, shared *Shared) error {
	flags := unix.MAP_FIXED_NOREPLACE | mmapFlags(v)
	switch {
	case v.Shared:
		flags |= unix.MAP_SHARED
	case v.HasVmFlag(image.VmDroppable):
		flags |= unix.MAP_DROPPABLE
	default:
		flags |= unix.MAP_PRIVATE
	}
	if v.GrowsDown {
		flags |= unix.MAP_GROWSDOWN
	}
	fd := -1
	if v.FileBacked() {
		oflags := unix.O_RDONLY | unix.O_CLOEXEC
		if v.OpensWritable() {
			oflags = unix.O_RDWR | unix.O_CLOEXEC
		}
		var err error
		if v.Kind == image.KindFile {
			fd, err = open(v.Path, oflags)
		} else {
			fd, err = shared.openFile(r, v, oflags)
		}
		if err != nil {
			return err
		}
		defer r.Close(fd)
	} else {
		flags |= unix.MAP_ANONYMOUS
	}
	addr, err := r.Syscall(unix.SYS_MMAP, v.Start, v.End-v.Start, uint64(mapProt(v)), flags, uint64(int64(fd)), v.Offset)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	if addr != v.Start {
		return fmt.Errorf("mmap: mapped at %#x", addr)
	}
	return nil
}

// writeBatch bounds one process_vm_writev call.
const writeBatch = 64 << 20

// writePages copies every saved page from the page files into the stub
// with process_vm_writev, many runs per call, except the pages inherited
// (sorted ranges) from the parent the stub was forked from and, with lazy,
// those of Lazy mappings.
func writePages(pid int, p *image.Process, pages PageFiles, inherited [][2]uint64, lazy bool) error {
	var eager [][2]uint64
	if lazy {
		eager = LazyEager(p)
	}
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	total := 0
	flush := func() error {
		if total == 0 {
			return nil
		}
		n, err := unix.ProcessVMWritev(pid, local, remote, 0)
		if err != nil || n != total {
			// Fall back to /proc/PID/mem run by run, which names the
			// failing address.
			for i := range remote {
				b := unsafeSlice(local[i])
				if err := ptrace.WriteMem(pid, uint64(remote[i].Base), b); err != nil {
					return fmt.Errorf("restore pages of %d: %w", pid, err)
				}
			}
		}
		local, remote, total = local[:0], remote[:0], 0
		return nil
	}
	for _, v := range p.VMAs {
		if v.Kind == image.KindSysV {
			continue // written into the segment by PrepareSysV
		}
		runs := v.Pages
		if len(inherited) > 0 {
			runs = cutRuns(runs, inherited)
		}
		if lazy && Lazy(&v) {
			// Brought in through userfaultfd, but for the few pages
			// written at once all the same.
			runs = withinRuns(runs, eager)
		}
		for _, run := range runs {
			files := pages[run.Owner(p.Pid)]
			if run.Depth >= len(files) || run.FileOff+int64(run.Count*image.PageSize) > int64(len(files[run.Depth])) {
				return fmt.Errorf("restore pages of %d: run at %#x in image %d of the chain (page file of %d), not loaded", pid, run.Addr, run.Depth, run.Owner(p.Pid))
			}
			src := files[run.Depth]
			addr, off, n := run.Addr, run.FileOff, int64(run.Count*image.PageSize)
			for n > 0 {
				k := min(n, writeBatch-int64(total))
				iov := unix.Iovec{Base: &src[off]}
				iov.SetLen(int(k))
				local = append(local, iov)
				remote = append(remote, unix.RemoteIovec{Base: uintptr(addr), Len: int(k)})
				total += int(k)
				addr, off, n = addr+uint64(k), off+k, n-k
				if total == writeBatch || len(local) == 1024 {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	return flush()
}
