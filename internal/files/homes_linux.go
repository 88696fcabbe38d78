package files

import (
	"fmt"
	"os"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Memfds and deleted files are held by fds and by mappings (internal/mem),
// in any process of the tree. Each is recorded with its contents once, on
// the first record of the tree (processes in order, a process's fds before
// its mappings: image.Process.MapFiles holds those first seen through a
// mapping), and restore creates it once: in the first process with it,
// before that process's memory, as a helper fd above its image fds (its
// "home"). Every fd and mapping of it is a reopen of the home through
// /proc with its own access mode, so a write through one shows through
// every other, as before the dump. Sweep closes the homes.

// procPath is the path rtcr opens the file of s through: /proc/PID/fd/N,
// or for a mapping its /proc/PID/map_files entry.
func (s *fdState) procPath() string {
	if s.mapped != "" {
		return s.mapped
	}
	return fmt.Sprintf("/proc/%d/fd/%d", s.pid, s.num)
}

// DumpMapped records the memfd or deleted file that the mapping start-end
// of process pid maps: its identity (FileDev, FileIno) and kind, and,
// when the tree records it for the first time (first), its contents; the
// caller keeps a first record in image.Process.MapFiles. Anything else
// mapped under a "(deleted)" name is refused.
func (t *Tree) DumpMapped(pid int, start, end uint64) (fd image.FD, first bool, err error) {
	s := &fdState{pid: pid, num: -1, tree: t, mapped: fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, start, end)}
	where := fmt.Sprintf("mapping %#x-%#x of %d", start, end, pid)
	if s.link, err = os.Readlink(s.mapped); err != nil {
		return image.FD{}, false, fmt.Errorf("%s: %w", where, err)
	}
	if err := unix.Stat(s.mapped, &s.st); err != nil {
		return image.FD{}, false, fmt.Errorf("%s (%s): %w", where, s.link, err)
	}
	// What a mapping's file is opened with does not matter: restore opens
	// each mapping's own way.
	s.info = &procfs.FDInfo{Flags: unix.O_RDWR}
	first = !t.deleted[FileID{Dev: s.st.Dev, Ino: s.st.Ino}]
	for _, k := range []struct {
		name string
		k    *kind
	}{{image.FDMemfd, &memfdKind}, {image.FDDeleted, &deletedKind}} {
		fd, ok, err := k.k.dump(s)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("%s (%s): %w", where, s.link, err)
		}
		if ok {
			fd.Num, fd.Kind, fd.Flags = -1, k.name, 0
			return fd, first, nil
		}
	}
	return image.FD{}, false, fmt.Errorf("%s (%s): mapping of a deleted file that is not a regular file: %w", where, s.link, ErrUnsupported)
}

// PrepareHomes creates in the stub r, before its memory, the memfds and
// deleted files process p is the first of the tree to hold (by its fds,
// then by its mappings), with credentials as for deleted files' directories.
func (rs *Restorer) PrepareHomes(r *ptrace.Remote, p *image.Process, as *image.Creds) error {
	c := &restoreCtx{r: r, as: as, Restorer: rs}
	sorted := append([]image.FD(nil), p.FDs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Num < sorted[j].Num })
	for _, fd := range sorted {
		c.tempBase = max(c.tempBase, fd.Num+1)
	}
	if err := raiseNofile(r.Pid, c.tempBase); err != nil {
		return err
	}
	for _, list := range [][]image.FD{sorted, p.MapFiles} {
		for i := range list {
			fd := &list[i]
			if (fd.Kind != image.FDMemfd && fd.Kind != image.FDDeleted) || fd.FileIno == 0 {
				continue
			}
			if _, err := c.home(fd); err != nil {
				return fmt.Errorf("create %s %s (of fd %d): %w", fd.Kind, fd.Desc, fd.Num, err)
			}
		}
	}
	return nil
}

// OpenMapped opens in the stub r, for a mapping, the memfd or deleted file
// whose identity at dump was dev:ino (created by PrepareHomes in r or an
// earlier process of the tree), with flags (O_RDONLY or O_RDWR; it is
// made close-on-exec). The caller closes the fd.
func (rs *Restorer) OpenMapped(r *ptrace.Remote, dev, ino uint64, flags int) (int, error) {
	h, ok := rs.deleted[FileID{Dev: dev, Ino: ino}]
	if !ok {
		return -1, fmt.Errorf("file %d:%d is not restored", dev, ino)
	}
	return reopenHome(r, h, flags|unix.O_CLOEXEC)
}

// home returns the helper of the memfd or deleted file of fd, creating it
// in the stub of c when fd is the tree's first record of it. A memfd of an
// image of an earlier rtcr (no identity) gets a home of its own.
func (c *restoreCtx) home(fd *image.FD) (pipeHome, error) {
	id := FileID{Dev: fd.FileDev, Ino: fd.FileIno}
	if h, ok := c.deleted[id]; ok && fd.FileIno != 0 {
		return h, nil
	}
	var h pipeHome
	var err error
	if fd.Kind == image.FDMemfd {
		h, err = createMemfd(c, fd)
	} else if h, err = createDeleted(c, fd); err == nil && len(fd.MemfdData) > 0 {
		err = fillDeleted(h, fd)
	}
	if err != nil {
		return pipeHome{}, err
	}
	if fd.FileIno != 0 {
		c.deleted[id] = h
	}
	return h, nil
}

// openHomed is the open of memfd and deleted-file fds: a reopen of the
// file's helper with the fd's access mode (and the synchronous-write flags
// F_SETFL cannot set), at the fd's position.
func openHomed(c *restoreCtx, fd *image.FD) (int, error) {
	h, err := c.home(fd)
	if err != nil {
		return -1, err
	}
	flags := fd.Flags&(unix.O_ACCMODE|unix.O_PATH|unix.O_SYNC|unix.O_DSYNC) | unix.O_CLOEXEC
	got, err := reopenHome(c.r, h, flags)
	if err != nil {
		return -1, err
	}
	// A removed directory is empty: its position means nothing.
	if fd.Offset != 0 && fd.Flags&unix.O_PATH == 0 && fd.Mode&unix.S_IFMT != unix.S_IFDIR {
		if _, err := c.r.Syscall(unix.SYS_LSEEK, uint64(got), uint64(fd.Offset), unix.SEEK_SET); err != nil {
			_ = c.r.Close(got)
			return -1, fmt.Errorf("seek to %d: %w", fd.Offset, err)
		}
	}
	return got, nil
}

// reopenHome opens the file of helper h in the stub r through /proc.
func reopenHome(r *ptrace.Remote, h pipeHome, flags int) (int, error) {
	from := fmt.Sprintf("/proc/%d/fd/%d", h.pid, h.ends[0])
	if h.pid == r.Pid {
		from = fmt.Sprintf("/proc/self/fd/%d", h.ends[0])
	}
	got, err := r.OpenAt(from, flags, 0)
	if err != nil {
		return -1, fmt.Errorf("reopen the recreated file with flags %#o: %w", flags, err)
	}
	return got, nil
}

// DumpCwd records the working directory of process pid of the tree, which
// was removed ("(deleted)"), as a deleted directory (Num -1): its identity
// ties it to the fds of the tree on the same directory.
func (t *Tree) DumpCwd(pid int) (image.FD, error) {
	s := &fdState{pid: pid, num: -1, tree: t, mapped: fmt.Sprintf("/proc/%d/cwd", pid)}
	var err error
	if s.link, err = os.Readlink(s.mapped); err != nil {
		return image.FD{}, fmt.Errorf("working directory of %d: %w", pid, err)
	}
	if err := unix.Stat(s.mapped, &s.st); err != nil {
		return image.FD{}, fmt.Errorf("working directory %s of %d: %w", s.link, pid, err)
	}
	s.info = &procfs.FDInfo{Flags: unix.O_RDONLY | unix.O_DIRECTORY}
	fd, ok, err := deletedKind.dump(s)
	if err == nil && (!ok || s.st.Mode&unix.S_IFMT != unix.S_IFDIR) {
		err = fmt.Errorf("not a removed directory: %w", ErrUnsupported)
	}
	if err != nil {
		return image.FD{}, fmt.Errorf("working directory %s of %d: %w", s.link, pid, err)
	}
	fd.Num, fd.Kind = -1, image.FDDeleted
	return fd, nil
}

// ChdirDeleted makes the recreated removed directory cwd (p.CwdDeleted)
// the working directory of the stub r, after its fds are installed: the
// directory is created (in r, unless a process restored before, or one
// of r's fds, made it already) and r does fchdir to a reopen of it.
func (rs *Restorer) ChdirDeleted(r *ptrace.Remote, fds []image.FD, cwd *image.FD, as *image.Creds) error {
	c := &restoreCtx{r: r, as: as, Restorer: rs}
	for _, fd := range fds {
		c.tempBase = max(c.tempBase, fd.Num+1)
	}
	h, err := c.home(cwd)
	if err != nil {
		return fmt.Errorf("recreate the removed working directory %s: %w", cwd.Path, err)
	}
	got, err := reopenHome(r, h, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	_, err = r.Syscall(unix.SYS_FCHDIR, uint64(got))
	if cerr := r.Close(got); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fchdir to the removed working directory %s: %w", cwd.Path, err)
	}
	return nil
}
