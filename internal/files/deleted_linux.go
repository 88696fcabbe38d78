package files

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// deletedKind covers regular files deleted while open (readlink
// "/dir/name (deleted)", no link left; memfds are memfdKind's): the path
// they had, their contents (runs of data, holes skipped, at most
// image.MaxMemfdData bytes, kept in the manifest), size, permission bits,
// position and flags. rtcr reads the contents through its own open of
// /proc/PID/fd/N (a new open file: the target's position does not move),
// once per file: every fd of the tree on one file (dup, fork, a second
// open) and every mapping of it records its identity (device, inode), and
// restore makes them one file again.
//
// Restore creates the file unlinked (O_TMPFILE) in the directory it was
// deleted from, which must still exist and be writable by the process (its
// credentials, as for files reopened by path, see CheckAccess). The first
// process of the tree with the file keeps it open read-write as a helper
// fd above its image fds, which rtcr fills (through a copy taken with
// pidfd_getfd, whatever the file's permission bits), and every fd on the
// file is a reopen of the helper through /proc with its own access mode,
// as the process's own reopen would be, and every mapping of it (see
// homes_linux.go). Sweep closes the helper. A file deleted but still
// linked under another name is pathKind's (see otherLink).
//
// A removed directory (rmdir while open, or a working directory, see
// Tree.DumpCwd) is empty: it is recorded the same way without contents
// and recreated with mkdir under a temporary name in its parent, opened as
// the helper and removed again (createDeletedDir). A deleted FIFO is
// recorded with its capacity and buffered bytes (once per FIFO), a deleted
// device node of /dev/null, zero, full, random or urandom with its device
// number; both are recreated with mknod the same way (createDeletedNode).
// Other deleted device nodes are refused.
var deletedKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		path, ok := strings.CutSuffix(s.link, " (deleted)")
		typ := s.st.Mode & unix.S_IFMT
		if !ok || !strings.HasPrefix(path, "/") {
			return image.FD{}, false, nil
		}
		switch {
		case typ == unix.S_IFREG, typ == unix.S_IFDIR, typ == unix.S_IFIFO:
		case typ == unix.S_IFCHR && image.StatelessDevices[s.st.Rdev]:
		case typ == unix.S_IFCHR:
			return image.FD{}, false, fmt.Errorf("deleted device node %d:%d, not one of /dev/null, zero, full, random, urandom: %w", unix.Major(s.st.Rdev), unix.Minor(s.st.Rdev), ErrUnsupported)
		default:
			return image.FD{}, false, nil
		}
		if s.st.Nlink != 0 && typ == unix.S_IFREG {
			return image.FD{}, false, nil // still linked: pathKind looks for the other name
		}
		if s.st.Nlink != 0 {
			return image.FD{}, false, fmt.Errorf("open file was deleted but has %d other links: %w", s.st.Nlink, ErrUnsupported)
		}
		if s.st.Size > maxDeletedSize {
			return image.FD{}, false, fmt.Errorf("deleted file of %d bytes, more than %d: %w", s.st.Size, int64(maxDeletedSize), ErrUnsupported)
		}
		if filepath.Clean(path) != path || path == "/" {
			return image.FD{}, false, fmt.Errorf("deleted file path %q is not clean: %w", path, ErrUnsupported)
		}
		// Restore recreates it in its directory: count the directories
		// removed with it, which restore makes and removes again.
		gone, err := goneDirs(path)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("deleted %s: %w", fileType(s.st.Mode), err)
		}
		fd := image.FD{
			Path: path, Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Size: s.st.Size, Desc: s.link, GoneDirs: gone,
			FileDev: s.st.Dev, FileIno: s.st.Ino, FileUid: s.st.Uid, FileGid: s.st.Gid,
			FileAtime: s.st.Atim.Nano(), FileMtime: s.st.Mtim.Nano(),
		}
		if typ != unix.S_IFREG {
			// A directory is empty, as rmdir left it; a device node has
			// no contents; a FIFO its buffered bytes (below).
			fd.Size = 0
		}
		if typ == unix.S_IFCHR {
			fd.FileRdev = s.st.Rdev
		}
		id := FileID{Dev: s.st.Dev, Ino: s.st.Ino}
		if typ == unix.S_IFIFO {
			// Each fd is a reopen of one helper: the capacity is the
			// FIFO's; its bytes are saved once.
			size, data, err := peekPipe(s.pid, s.num)
			if err != nil {
				return image.FD{}, false, err
			}
			fd.PipeSize = size
			if !s.tree.deleted[id] {
				fd.PipeData = data
			}
		}
		first := !s.tree.deleted[id]
		if s.tree.deleted == nil {
			s.tree.deleted = map[FileID]bool{}
		}
		s.tree.deleted[id] = true
		if !first || typ != unix.S_IFREG {
			return fd, true, nil // the contents are on the first fd
		}
		f, err := unix.Open(s.procPath(), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
		if errors.Is(err, unix.EPERM) {
			// O_NOATIME needs the file's owner or CAP_FOWNER.
			f, err = unix.Open(s.procPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return image.FD{}, false, fmt.Errorf("open deleted file: %w", err)
		}
		defer unix.Close(f)
		if fd.MemfdData, err = readRuns(f, s.st.Size, "deleted file"); err != nil {
			return image.FD{}, false, err
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		dir, _ := presentDir(fd)
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("directory %s of the deleted file has vanished since the checkpoint", dir)
			}
			return fmt.Errorf("stat %s: %w", dir, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s, where the deleted file was, is no longer a directory (mode %o): %w", dir, st.Mode, ErrChanged)
		}
		return nil
	},
	open: openHomed,
	pos:  true,
}

// maxDeletedSize is the largest size (holes included) of a deleted file
// an image may record (image.validateDataRuns).
const maxDeletedSize = 1 << 40

// deletedAccess is the Access restore needs for a deleted file fd: create
// a file in its directory.
func deletedAccess(fd *image.FD) Access {
	dir, _ := presentDir(fd)
	return Access{
		Path: dir, Flags: unix.O_RDONLY | unix.O_DIRECTORY, Type: unix.S_IFDIR,
		What: fmt.Sprintf("fd %d (deleted file %s)", fd.Num, fd.Path), Create: true,
	}
}

// createDeleted creates the deleted file of fd in the stub: its directory
// is checked with the process's credentials and opened (O_PATH, checked to
// be the one checked), the file is created in it with O_TMPFILE, moved
// above every image fd as the helper, and given its size, mode bits
// (set-id and sticky included), times and owner: the file's at dump for
// an image of root's, else the process's fs uid and gid (as if the
// process had created it).
func createDeleted(c *restoreCtx, fd *image.FD) (pipeHome, error) {
	dir := filepath.Dir(fd.Path)
	ids, err := CheckAccess(c.as, []Access{deletedAccess(fd)})
	if err != nil {
		return pipeHome{}, err
	}
	top, gone := presentDir(fd)
	dirfd, err := OpenIn(c.r, top, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, ids[0])
	if err != nil {
		return pipeHome{}, err
	}
	var made []int
	if len(gone) > 0 {
		if made, err = makeGoneDirs(c, dirfd, top, gone); err != nil {
			return pipeHome{}, err
		}
		dirfd = made[len(made)-1]
	}
	var tmp uint64
	switch fd.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		tmp, err = createDeletedDir(c, dirfd, fd)
	case unix.S_IFIFO, unix.S_IFCHR:
		tmp, err = createDeletedNode(c, dirfd, fd)
	default:
		var dot uint64
		if dot, err = c.r.PutString(ptrace.DataOff, "."); err == nil {
			tmp, err = c.r.Syscall(unix.SYS_OPENAT, uint64(dirfd), dot, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
	}
	if made != nil {
		if rerr := removeGoneDirs(c, made, gone); err == nil && rerr != nil { // closes dirfd too
			_ = c.r.Close(int(tmp))
			err = rerr
		}
	} else if cerr := c.r.Close(dirfd); err == nil {
		err = cerr
	}
	if err != nil {
		return pipeHome{}, fmt.Errorf("create an unlinked %s in %s: %w", fileType(fd.Mode), dir, err)
	}
	high, err := c.r.Syscall(unix.SYS_FCNTL, tmp, unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
	if cerr := c.r.Close(int(tmp)); err == nil {
		err = cerr
	}
	if err != nil {
		return pipeHome{}, fmt.Errorf("move the recreated deleted file: %w", err)
	}
	h := pipeHome{pid: c.r.Pid, ends: [2]int{int(high), int(high)}}
	f, err := helperCopy(h)
	if err != nil {
		return pipeHome{}, err
	}
	defer unix.Close(f)
	if fd.Mode&unix.S_IFMT != unix.S_IFREG {
		// nothing to size
	} else if err := unix.Ftruncate(f, fd.Size); err != nil {
		return pipeHome{}, fmt.Errorf("truncate the recreated deleted file to %d: %w", fd.Size, err)
	}
	uid, gid := fd.FileUid, fd.FileGid // a root image: the file's own owner
	if c.as != nil {
		uid, gid = c.as.Fsuid, c.as.Fsgid
	}
	if err := unix.Fchown(f, int(uid), int(gid)); err != nil {
		return pipeHome{}, fmt.Errorf("chown the recreated deleted file to %d:%d: %w", uid, gid, err)
	}
	// After the chown, which clears the set-id bits.
	if err := unix.Fchmod(f, fd.Mode&0o7777); err != nil {
		return pipeHome{}, fmt.Errorf("chmod the recreated deleted file %#o: %w", fd.Mode&0o7777, err)
	}
	if err := setTimes(f, fd); err != nil {
		return pipeHome{}, err
	}
	return h, nil
}

// setTimes gives the recreated deleted file, open as f, fd's access and
// modification times (again after every write into it).
func setTimes(f int, fd *image.FD) error {
	if fd.FileMtime == 0 {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(fd.FileAtime), unix.NsecToTimespec(fd.FileMtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f), ts, 0); err != nil {
		return fmt.Errorf("set the times of the recreated deleted file: %w", err)
	}
	return nil
}

// helperCopy returns rtcr's own copy (pidfd_getfd: the same open file,
// read-write) of the helper fd h of a recreated deleted file.
func helperCopy(h pipeHome) (int, error) {
	f, err := getfd(h.pid, h.ends[0])
	if err != nil {
		return -1, fmt.Errorf("copy the recreated deleted file: %w", err)
	}
	return f, nil
}

// fillDeleted writes the saved contents of fd into the recreated file of
// helper h.
func fillDeleted(h pipeHome, fd *image.FD) error {
	f, err := helperCopy(h)
	if err != nil {
		return err
	}
	defer unix.Close(f)
	for _, r := range fd.MemfdData {
		if n, err := unix.Pwrite(f, r.Data, r.Off); err != nil || n != len(r.Data) {
			return fmt.Errorf("write %d bytes into the recreated deleted file at %d: %d written: %v", len(r.Data), r.Off, n, err)
		}
	}
	return setTimes(f, fd)
}

// createDeletedDir makes a removed directory in the directory dirfd of
// the stub of c: mkdir under a name no file has, open it, rmdir. It
// returns the open fd.
func createDeletedDir(c *restoreCtx, dirfd int, fd *image.FD) (uint64, error) {
	return createRemoved(c, dirfd, fd, "mkdir", unix.O_RDONLY|unix.O_DIRECTORY, unix.AT_REMOVEDIR, func(name uint64) error {
		_, err := c.r.Syscall(unix.SYS_MKDIRAT, uint64(dirfd), name, 0o700)
		return err
	})
}

// createDeletedNode makes the deleted FIFO or device node of fd in the
// directory dirfd of the stub of c (mknod; a device node needs
// CAP_MKNOD), opens it read-write (a FIFO so opened waits for no peer, and
// keeps its buffer for the reopens of every fd), sizes a FIFO and puts
// its saved bytes back.
func createDeletedNode(c *restoreCtx, dirfd int, fd *image.FD) (uint64, error) {
	typ := uint64(fd.Mode & unix.S_IFMT)
	got, err := createRemoved(c, dirfd, fd, "mknod", unix.O_RDWR|unix.O_NONBLOCK, 0, func(name uint64) error {
		_, err := c.r.Syscall(unix.SYS_MKNODAT, uint64(dirfd), name, typ|0o600, fd.FileRdev)
		return err
	})
	if err != nil || typ != unix.S_IFIFO {
		return got, err
	}
	if fd.PipeSize > 0 {
		if _, err := c.r.Syscall(unix.SYS_FCNTL, got, unix.F_SETPIPE_SZ, uint64(fd.PipeSize)); err != nil {
			_ = c.r.Close(int(got))
			return 0, fmt.Errorf("set FIFO size %d: %w", fd.PipeSize, err)
		}
	}
	if len(fd.PipeData) > 0 {
		if err := refillFifo(pipeHome{pid: c.r.Pid, ends: [2]int{int(got), int(got)}}, fd.Path, fd.PipeData); err != nil {
			_ = c.r.Close(int(got))
			return 0, err
		}
	}
	return got, nil
}

// createRemoved makes the file of fd with make in the directory dirfd of
// the stub of c under the name it had (what readlink of its fds shows,
// with " (deleted)"), or when a file has that name now under a name no
// file has, opens it with flags (and O_NOFOLLOW|O_CLOEXEC) and removes
// the name again (unlinkat with unlinkFlags). It returns the open fd;
// what names the call in errors.
func createRemoved(c *restoreCtx, dirfd int, fd *image.FD, what string, flags, unlinkFlags int, make func(name uint64) error) (uint64, error) {
	name := filepath.Base(fd.Path)
	addr, err := c.r.PutString(ptrace.DataOff, name)
	if err != nil {
		return 0, err
	}
	err = make(addr)
	if errors.Is(err, unix.EEXIST) {
		name = fmt.Sprintf(".rtcr-deleted-%d-%d", c.r.Pid, time.Now().UnixNano())
		if addr, err = c.r.PutString(ptrace.DataOff, name); err != nil {
			return 0, err
		}
		err = make(addr)
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", what, name, err)
	}
	got, err := c.r.Syscall(unix.SYS_OPENAT, uint64(dirfd), addr, uint64(flags|unix.O_NOFOLLOW|unix.O_CLOEXEC), 0)
	if _, rerr := c.r.Syscall(unix.SYS_UNLINKAT, uint64(dirfd), addr, uint64(unlinkFlags)); err == nil && rerr != nil {
		_ = c.r.Close(int(got))
		return 0, fmt.Errorf("remove %s: %w", name, rerr)
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", name, err)
	}
	return got, nil
}

// goneDirs returns how many directories above path (its own, its
// parent …) do not exist: they were removed with the file. More than
// image.MaxGoneDirs, or one that is there but not a directory, is refused.
func goneDirs(path string) (int, error) {
	n := 0
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		err := unix.Stat(d, &st)
		if errors.Is(err, unix.ENOENT) && n < image.MaxGoneDirs && d != "/" {
			n++
			continue
		}
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return 0, fmt.Errorf("its directory %s is gone too and %s is not a directory (%v): %w", filepath.Dir(path), d, err, ErrUnsupported)
		}
		return n, nil
	}
}

// presentDir returns the directory above deleted file fd that was there at
// dump, and the names of the fd.GoneDirs directories below it, top down.
func presentDir(fd *image.FD) (string, []string) {
	d := filepath.Dir(fd.Path)
	gone := make([]string, fd.GoneDirs)
	for i := fd.GoneDirs - 1; i >= 0; i-- {
		gone[i] = filepath.Base(d)
		d = filepath.Dir(d)
	}
	return d, gone
}

// makeGoneDirs makes the directories gone (names, top down) below the
// directory dirfd (top) in the stub of c, each opened O_PATH. It returns
// dirfd and those fds; on error it removes what it made.
func makeGoneDirs(c *restoreCtx, dirfd int, top string, gone []string) ([]int, error) {
	made := []int{dirfd}
	for _, name := range gone {
		addr, err := c.r.PutString(ptrace.DataOff, name)
		if err == nil {
			_, err = c.r.Syscall(unix.SYS_MKDIRAT, uint64(made[len(made)-1]), addr, 0o700)
		}
		var got uint64
		if err == nil {
			got, err = c.r.Syscall(unix.SYS_OPENAT, uint64(made[len(made)-1]), addr, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			_ = removeGoneDirs(c, made, gone)
			return nil, fmt.Errorf("make %s below %s, removed at dump: %w", name, top, err)
		}
		made = append(made, int(got))
	}
	return made, nil
}

// removeGoneDirs removes the directories makeGoneDirs made (made[i+1] is
// gone[i] in made[i]), bottom up, and closes their fds and made[0]. It
// returns the first error of a removal.
func removeGoneDirs(c *restoreCtx, made []int, gone []string) error {
	var first error
	for i := len(made) - 1; i >= 1; i-- {
		addr, err := c.r.PutString(ptrace.DataOff, gone[i-1])
		if err == nil {
			_, err = c.r.Syscall(unix.SYS_UNLINKAT, uint64(made[i-1]), addr, unix.AT_REMOVEDIR)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("remove %s, made for a deleted file: %w", gone[i-1], err)
		}
		_ = c.r.Close(made[i])
	}
	_ = c.r.Close(made[0])
	return first
}
