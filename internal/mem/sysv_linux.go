package mem

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"syscall"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/osthread"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// System V shared memory (include/uapi/linux/shm.h, ipc.h).
const (
	shmExec   = 0o100000 // SHM_EXEC: shmat for execution
	shmDest   = 0o1000   // SHM_DEST in shm_perm.mode: marked removed
	shmLocked = 0o2000   // SHM_LOCKED in shm_perm.mode
	shmLock   = 11       // SHM_LOCK
	shmUnlock = 12       // SHM_UNLOCK
)

// ErrSysVTaken reports a SysV shared memory id or key the image needs that
// another segment holds.
var ErrSysVTaken = errors.New("SysV shared memory id or key taken")

// sysvSeg is what a dump knows of one segment.
type sysvSeg struct {
	rec    image.SysVShm
	nattch uint64 // shm_nattch: one per mapping, in or outside the tree
	seen   uint64 // mappings of it in the tree
}

// roundSize is the size of a SysV segment's attachments: its size rounded
// up to pages.
func roundSize(size uint64) uint64 {
	return (size + image.PageSize - 1) / image.PageSize * image.PageSize
}

// sysvMapping records, at dump, the SysV segment the mapping v of pid
// attaches (its shmid is v.Inode) and reports whether v belongs to the
// segment's first attachment in the tree, whose pages hold its contents.
func (s *Shared) sysvMapping(pid int, v *image.VMA) (home bool, err error) {
	where := fmt.Sprintf("mapping %#x-%#x %q of %d", v.Start, v.End, v.Name, pid)
	if s == nil {
		return false, fmt.Errorf("%s: SysV shared memory outside a tree dump: %w", where, ErrUnsupported)
	}
	if v.HasVmFlag(image.VmNoReserve) || v.HasVmFlag(image.VmDroppable) {
		return false, fmt.Errorf("%s: SysV shared memory with VmFlags %v, which shmat cannot set: %w", where, v.VmFlags, ErrUnsupported)
	}
	id := int(v.Inode)
	g, ok := s.sysv[id]
	if !ok {
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
			return false, fmt.Errorf("%s: SysV shm id %d: IPC_STAT: %w", where, id, err)
		}
		if extra := ds.Perm.Mode &^ (0o777 | shmDest | shmLocked); extra != 0 {
			return false, fmt.Errorf("%s: SysV shm id %d: mode bits %#o unknown to rtcr: %w", where, id, extra, ErrUnsupported)
		}
		if v.Offset != 0 {
			return false, fmt.Errorf("%s: SysV shm id %d attached in part (first mapping at offset %#x): %w", where, id, v.Offset, ErrUnsupported)
		}
		g = &sysvSeg{nattch: ds.Nattch, rec: image.SysVShm{
			ID: id, Key: ds.Perm.Key, Size: ds.Segsz, Mode: ds.Perm.Mode & 0o777,
			UID: ds.Perm.Uid, GID: ds.Perm.Gid, CUID: ds.Perm.Cuid, CGID: ds.Perm.Cgid,
			Removed: ds.Perm.Mode&shmDest != 0, Locked: ds.Perm.Mode&shmLocked != 0,
			Pid: pid, Start: v.Start,
		}}
		s.sysv[id] = g
	}
	g.seen++
	return pid == g.rec.Pid && v.Start-v.Offset == g.rec.Start, nil
}

// checkAttachments refuses, at dump, a SysV segment pid attached only in
// part (a part of an attachment unmapped): shmat attaches whole segments.
// The mappings of one attachment (split by mprotect or madvise) follow
// each other with their offsets.
func (s *Shared) checkAttachments(pid int, vmas []image.VMA) error {
	for i, v := range vmas {
		if v.Kind != image.KindSysV {
			continue
		}
		prev, next := i > 0 && continues(&vmas[i-1], &v), i+1 < len(vmas) && continues(&v, &vmas[i+1])
		size := roundSize(s.sysv[int(v.Inode)].rec.Size)
		if (v.Offset != 0 && !prev) || (!next && v.Offset+(v.End-v.Start) != size) {
			return fmt.Errorf("mapping %#x-%#x %q of %d: SysV shm id %d attached in part (offset %#x of %d bytes): %w",
				v.Start, v.End, v.Name, pid, v.Inode, v.Offset, size, ErrUnsupported)
		}
	}
	return nil
}

// continues reports whether SysV mapping b continues a's attachment.
func continues(a, b *image.VMA) bool {
	return a.Kind == image.KindSysV && b.Kind == image.KindSysV && a.Inode == b.Inode && a.End == b.Start &&
		b.Offset != 0 && a.Offset+(a.End-a.Start) == b.Offset
}

// SysV returns, at the end of a dump, the SysV segments the tree
// attaches. A segment also attached outside the tree is refused: its
// contents would change under the checkpoint.
func (s *Shared) SysV() ([]image.SysVShm, error) {
	var out []image.SysVShm
	for _, g := range s.sysv {
		if g.nattch != g.seen {
			return nil, fmt.Errorf("SysV shm id %d (key %#x) is attached %d times, %d of them in the tree: shared with processes outside it: %w",
				g.rec.ID, g.rec.Key, g.nattch, g.seen, ErrUnsupported)
		}
		out = append(out, g.rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SysVRestore holds the SysV segments a restore prepared.
type SysVRestore struct {
	segs    []image.SysVShm
	created []int
}

// PrepareSysV makes, before any process of the tree is created, every
// SysV segment of segs exist with its id, key, size, owner, mode, lock and
// the contents of the checkpoint (the pages of procs' first attachment of
// it, from pages by pid and depth in the chain). A segment that still exists with the same id,
// key and size, attached nowhere (the tree's own, left when the tree was
// killed), is reused, its contents reset; a removed one is created again
// with its id (through /proc/sys/kernel/shm_next_id) and its creator's
// uid and gid. An id or key another segment holds is refused
// (ErrSysVTaken). Unless owner is root, a reused segment must be the
// owner's.
func PrepareSysV(segs []image.SysVShm, procs []image.Process, pages map[int][][]byte, owner image.Owner) (*SysVRestore, error) {
	sr := &SysVRestore{segs: segs}
	for i := range segs {
		if err := sr.prepare(&segs[i], procs, pages, owner); err != nil {
			sr.Undo()
			return nil, fmt.Errorf("SysV shm id %d (key %#x, %d bytes): %w", segs[i].ID, segs[i].Key, segs[i].Size, err)
		}
	}
	return sr, nil
}

func (sr *SysVRestore) prepare(seg *image.SysVShm, procs []image.Process, pages map[int][][]byte, owner image.Owner) error {
	var ds unix.SysvShmDesc
	_, err := unix.SysvShmCtl(seg.ID, unix.IPC_STAT, &ds)
	switch {
	case err == nil:
		if ds.Perm.Key != seg.Key || ds.Segsz != seg.Size || ds.Nattch != 0 || ds.Perm.Mode&shmDest != 0 {
			return fmt.Errorf("the id is taken by a segment with key %#x, %d bytes, attached %d times: %w", ds.Perm.Key, ds.Segsz, ds.Nattch, ErrSysVTaken)
		}
		if !owner.Root && (ds.Perm.Uid != owner.Uid || ds.Perm.Cuid != owner.Uid) {
			return fmt.Errorf("the segment left is owned by %d (creator %d), not the image's owner %d: %w", ds.Perm.Uid, ds.Perm.Cuid, owner.Uid, image.ErrUntrusted)
		}
	case errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EIDRM):
		if err := sr.create(seg); err != nil {
			return err
		}
	default:
		return fmt.Errorf("IPC_STAT: %w", err)
	}
	ds.Perm.Uid, ds.Perm.Gid, ds.Perm.Mode = seg.UID, seg.GID, seg.Mode
	if _, err := unix.SysvShmCtl(seg.ID, unix.IPC_SET, &ds); err != nil {
		return fmt.Errorf("IPC_SET owner %d:%d mode %#o: %w", seg.UID, seg.GID, seg.Mode, err)
	}
	lock := shmUnlock
	if seg.Locked {
		lock = shmLock
	}
	if _, err := unix.SysvShmCtl(seg.ID, lock, nil); err != nil {
		return fmt.Errorf("SHM_LOCK/SHM_UNLOCK: %w", err)
	}
	return fill(seg, procs, pages)
}

// create creates seg again with its id: shm_next_id names the id the next
// shmget of this IPC namespace gets; the shmget runs on a thread of its
// own with the creator's uid and gid as effective ids (the thread then
// exits, never reused).
func (sr *SysVRestore) create(seg *image.SysVShm) error {
	if seg.Key != 0 {
		if other, err := unix.SysvShmGet(int(seg.Key), 0, 0); err == nil {
			return fmt.Errorf("key %#x belongs to SysV shm id %d now: %w", seg.Key, other, ErrSysVTaken)
		}
	}
	var id int
	var err error
	osthread.Do(func() { id, err = createAs(seg) }) // the thread ends with its changed ids
	if err != nil {
		return err
	}
	if id != seg.ID {
		_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return fmt.Errorf("created again, it got id %d (another segment was created meanwhile): %w", id, ErrSysVTaken)
	}
	sr.created = append(sr.created, seg.ID)
	return nil
}

// createAs runs on a locked thread: it sets shm_next_id, takes the
// creator's ids as effective ids (this thread only: raw setresuid) and
// creates the segment.
func createAs(seg *image.SysVShm) (int, error) {
	const nextID = "/proc/sys/kernel/shm_next_id"
	if err := os.WriteFile(nextID, []byte(strconv.Itoa(seg.ID)), 0); err != nil {
		return -1, fmt.Errorf("set %s: %w", nextID, err)
	}
	reset := func() { _ = os.WriteFile(nextID, []byte("-1"), 0) }
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(seg.CGID), ^uintptr(0)); e != 0 {
		reset()
		return -1, fmt.Errorf("take the creator's gid %d: %w", seg.CGID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(seg.CUID), ^uintptr(0)); e != 0 {
		reset()
		return -1, fmt.Errorf("take the creator's uid %d: %w", seg.CUID, e)
	}
	id, err := unix.SysvShmGet(int(seg.Key), int(seg.Size), unix.IPC_CREAT|unix.IPC_EXCL|int(seg.Mode))
	if err != nil {
		reset() // the kernel resets it only when it was used
		return -1, fmt.Errorf("shmget: %w", err)
	}
	return id, nil
}

// fill gives seg the contents of the checkpoint: rtcr attaches it, drops
// every page (MADV_REMOVE: a reused segment may hold data the checkpoint
// does not) and copies the pages of the segment's first attachment in
// procs. Bytes past the segment's size in its last page are not part of
// the segment and are not restored.
func fill(seg *image.SysVShm, procs []image.Process, pages map[int][][]byte) error {
	b, err := unix.SysvShmAttach(seg.ID, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat in rtcr: %w", err)
	}
	defer unix.SysvShmDetach(b)
	if err := unix.Madvise(b, unix.MADV_REMOVE); err != nil {
		return fmt.Errorf("clear (MADV_REMOVE): %w", err)
	}
	for i := range procs {
		p := &procs[i]
		if p.Pid != seg.Pid {
			continue
		}
		pg := pages[p.Pid]
		for _, v := range p.VMAs {
			if v.Kind != image.KindSysV || int(v.Inode) != seg.ID || v.Start-v.Offset != seg.Start {
				continue
			}
			for _, run := range v.Pages {
				off := v.Offset + (run.Addr - v.Start)
				n := run.Count * image.PageSize
				if off >= uint64(len(b)) {
					continue
				}
				n = min(n, uint64(len(b))-off)
				if run.Depth >= len(pg) || run.FileOff+int64(n) > int64(len(pg[run.Depth])) {
					return fmt.Errorf("SysV shm id %d: run at %#x in image %d of the chain, not loaded", seg.ID, run.Addr, run.Depth)
				}
				copy(b[off:off+n], pg[run.Depth][run.FileOff:run.FileOff+int64(n)])
			}
		}
	}
	return nil
}

// Finish marks removed (IPC_RMID) the segments that were at the
// checkpoint, once every process has attached them.
func (sr *SysVRestore) Finish() error {
	if sr == nil {
		return nil
	}
	for _, seg := range sr.segs {
		if seg.Removed {
			if _, err := unix.SysvShmCtl(seg.ID, unix.IPC_RMID, nil); err != nil {
				return fmt.Errorf("mark SysV shm id %d removed (IPC_RMID): %w", seg.ID, err)
			}
		}
	}
	return nil
}

// Undo removes the segments a failed restore created (they go with the
// last process attached to them).
func (sr *SysVRestore) Undo() {
	if sr == nil {
		return
	}
	for _, id := range sr.created {
		_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
	sr.created = nil
}

// attachSysV attaches, in r, the SysV segment whose attachment starts with
// the mapping vmas[i] (offset 0): read-only unless one of its mappings is
// writable or may become so, executable if one is executable. Its other
// mappings are part of it.
func attachSysV(r *ptrace.Remote, vmas []image.VMA, i int) error {
	v := &vmas[i]
	rdonly, exec := true, false
	for j := i; j < len(vmas) && (j == i || continues(&vmas[j-1], &vmas[j])); j++ {
		w := &vmas[j]
		if w.Prot&unix.PROT_WRITE != 0 || w.HasVmFlag(image.VmMayWriteFile) {
			rdonly = false
		}
		if w.Prot&unix.PROT_EXEC != 0 {
			exec = true
		}
	}
	var flags uint64
	if rdonly {
		flags |= unix.SHM_RDONLY
	}
	if exec {
		flags |= shmExec
	}
	addr, err := r.Syscall(unix.SYS_SHMAT, v.Inode, v.Start, flags)
	if err != nil {
		return fmt.Errorf("shmat SysV shm id %d: %w", v.Inode, err)
	}
	if addr != v.Start {
		return fmt.Errorf("shmat SysV shm id %d: attached at %#x", v.Inode, addr)
	}
	return nil
}
