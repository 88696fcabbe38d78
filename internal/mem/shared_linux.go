package mem

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Shared tracks shared anonymous memory that several processes of one
// tree map (a MAP_SHARED|MAP_ANONYMOUS region inherited across fork): the
// first process dumped (a parent before its children) saves its pages,
// the others refer to its mapping; restore maps that same memory into
// them through /proc/PID/map_files of the first. A nil *Shared treats
// every process on its own.
type Shared struct {
	// dump: shmem object (inode) → its first mapping seen.
	byInode map[uint64]home
	// restore: the first mapping (pid in the image, start) → where the
	// restored memory is (pid as rtcr sees it, end).
	restored map[image.ShmRef]home

	// DumpFile, at dump, records the memfd or deleted file mapped at
	// start-end of pid (files.Tree.DumpMapped): the record has its
	// identity and, when first, its contents.
	DumpFile func(pid int, start, end uint64) (rec image.FD, first bool, err error)
	// mapFiles are the first records DumpFile returned, by pid.
	mapFiles map[int][]image.FD
	// sysv are the SysV segments the dump found attached, by shmid.
	sysv map[int]*sysvSeg
	// OpenFile, at restore, opens in r the memfd or deleted file dev:ino
	// (files.Restorer.OpenMapped) with flags.
	OpenFile func(r *ptrace.Remote, dev, ino uint64, flags int) (int, error)
	// copySpare passes the rest of a process's last copy buffer to the
	// next process's copy, while the tree is frozen (DumpLater).
	copySpare spare
}

// spare returns the lending place of the dump's copy buffers (nil for a
// nil s).
func (s *Shared) spare() *spare {
	if s == nil {
		return nil
	}
	return &s.copySpare
}

type home struct {
	pid        int
	start, end uint64
	offset     uint64 // its offset in the shared memory object
}

// NewShared returns a tracker for one dump or restore of a tree.
func NewShared() *Shared {
	return &Shared{byInode: map[uint64]home{}, restored: map[image.ShmRef]home{}, mapFiles: map[int][]image.FD{}, sysv: map[int]*sysvSeg{}}
}

// MapFiles returns the records of the memfds and deleted files process
// pid was the first of the tree to map (for image.Process.MapFiles).
func (s *Shared) MapFiles(pid int) []image.FD {
	if s == nil {
		return nil
	}
	return s.mapFiles[pid]
}

// dumpFile records the memfd or deleted file v of pid maps and takes its
// identity.
func (s *Shared) dumpFile(pid int, v *image.VMA) error {
	if s == nil || s.DumpFile == nil {
		return fmt.Errorf("mapping %#x-%#x %q of %d: %s mapping outside a tree dump: %w", v.Start, v.End, v.Name, pid, v.Kind, ErrUnsupported)
	}
	rec, first, err := s.DumpFile(pid, v.Start, v.End)
	if err != nil {
		return err
	}
	if (rec.Kind == image.FDMemfd) != (v.Kind == image.KindMemfd) {
		return fmt.Errorf("mapping %#x-%#x %q of %d: its file is a %s: %w", v.Start, v.End, v.Name, pid, rec.Kind, ErrUnsupported)
	}
	v.Dev, v.Inode = rec.FileDev, rec.FileIno
	if first {
		s.mapFiles[pid] = append(s.mapFiles[pid], rec)
	}
	return nil
}

// openFile opens in r the memfd or deleted file v maps.
func (s *Shared) openFile(r *ptrace.Remote, v *image.VMA, flags int) (int, error) {
	if s == nil || s.OpenFile == nil {
		return -1, fmt.Errorf("%s mapping outside a tree restore: %w", v.Kind, ErrUnsupported)
	}
	return s.OpenFile(r, v.Dev, v.Inode, flags)
}

// share returns, at dump, the first mapping (the home) of the shared
// anonymous memory v of pid maps, or nil when v is that first mapping. For
// a later view it also returns the range of the memory object (offsets)
// the home covers: v saves the pages of the rest of its own range. The
// views may differ in size and place (one process grew or shrank its view
// with mremap, or unmapped a part).
func (s *Shared) share(pid int, v *image.VMA) (*image.ShmRef, [2]uint64, error) {
	if s == nil || v.Kind != image.KindSharedAnon || v.Inode == 0 {
		return nil, [2]uint64{}, nil
	}
	h, ok := s.byInode[v.Inode]
	if !ok {
		s.byInode[v.Inode] = home{pid: pid, start: v.Start, end: v.End, offset: v.Offset}
		return nil, [2]uint64{}, nil
	}
	return &image.ShmRef{Pid: h.pid, Start: h.start, Offset: v.Offset}, [2]uint64{h.offset, h.offset + (h.end - h.start)}, nil
}

// restoredHome records, at restore, where the home mapping v of process
// pid (as in the image) now is.
func (s *Shared) restoredHome(pid int, r *ptrace.Remote, v *image.VMA) {
	if s != nil && v.Kind == image.KindSharedAnon && v.ShareOf == nil {
		s.restored[image.ShmRef{Pid: pid, Start: v.Start}] = home{pid: r.Pid, start: v.Start, end: v.End}
	}
}

// sizeObject gives the shared anonymous memory object of the home mapping
// v, just mapped by r with MAP_SHARED|MAP_ANONYMOUS (an object of v's
// size, v at offset 0), its size at dump and puts v at its offset in it:
// through the mapping's /proc/PID/map_files entry, ftruncate and an mmap
// over v's own range. Images of earlier versions (no ShmSize) keep the
// object as mapped.
func sizeObject(r *ptrace.Remote, v *image.VMA) error {
	if v.ShmSize == 0 || (uint64(v.ShmSize) == v.End-v.Start && v.Offset == 0) {
		return nil
	}
	fd, err := r.OpenAt(fmt.Sprintf("/proc/self/map_files/%x-%x", v.Start, v.End), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the new shared memory: %w", err)
	}
	defer r.Close(fd)
	if _, err := r.Syscall(unix.SYS_FTRUNCATE, uint64(fd), uint64(v.ShmSize)); err != nil {
		return fmt.Errorf("size shared memory object to %d bytes: %w", v.ShmSize, err)
	}
	if v.Offset == 0 {
		return nil
	}
	flags := unix.MAP_SHARED | unix.MAP_FIXED | mmapFlags(v)
	addr, err := r.Syscall(unix.SYS_MMAP, v.Start, v.End-v.Start, uint64(mapProt(v)), flags, uint64(fd), v.Offset)
	if err != nil {
		return fmt.Errorf("mmap shared memory at offset %#x of its object: %w", v.Offset, err)
	}
	if addr != v.Start {
		return fmt.Errorf("mmap shared memory: mapped at %#x", addr)
	}
	return nil
}

// mapShared maps into r the memory the home mapping of v holds, at v's
// offset in it.
func (s *Shared) mapShared(r *ptrace.Remote, v *image.VMA) error {
	var h home
	ok := false
	if s != nil {
		h, ok = s.restored[image.ShmRef{Pid: v.ShareOf.Pid, Start: v.ShareOf.Start}]
	}
	if !ok {
		return fmt.Errorf("shares memory of process %d at %#x, which is not restored", v.ShareOf.Pid, v.ShareOf.Start)
	}
	path := fmt.Sprintf("/proc/%d/map_files/%x-%x", h.pid, h.start, h.end)
	fd, err := r.OpenAt(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer r.Close(fd)
	flags := unix.MAP_SHARED | unix.MAP_FIXED_NOREPLACE | mmapFlags(v)
	addr, err := r.Syscall(unix.SYS_MMAP, v.Start, v.End-v.Start, uint64(mapProt(v)), flags, uint64(fd), v.ShareOf.Offset)
	if err != nil {
		return fmt.Errorf("mmap shared memory of %d: %w", h.pid, err)
	}
	if addr != v.Start {
		return fmt.Errorf("mmap shared memory: mapped at %#x", addr)
	}
	return nil
}
