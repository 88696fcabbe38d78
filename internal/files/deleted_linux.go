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
// linked under another name is refused (that name is not known).
//
// A removed directory (rmdir while open, or a working directory, see
// Tree.DumpCwd) is empty: it is recorded the same way without contents
// and recreated with mkdir under a temporary name in its parent, opened as
// the helper and removed again (createDeletedDir).
var deletedKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		path, ok := strings.CutSuffix(s.link, " (deleted)")
		typ := s.st.Mode & unix.S_IFMT
		if !ok || !strings.HasPrefix(path, "/") || (typ != unix.S_IFREG && typ != unix.S_IFDIR) {
			return image.FD{}, false, nil
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
		fd := image.FD{
			Path: path, Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Size: s.st.Size, Desc: s.link,
			FileDev: s.st.Dev, FileIno: s.st.Ino, FileUid: s.st.Uid, FileGid: s.st.Gid,
			FileAtime: s.st.Atim.Nano(), FileMtime: s.st.Mtim.Nano(),
		}
		if typ == unix.S_IFDIR {
			fd.Size = 0 // empty, as rmdir left it: nothing to save
		}
		id := FileID{Dev: s.st.Dev, Ino: s.st.Ino}
		if s.tree.deleted[id] || typ == unix.S_IFDIR {
			return fd, true, nil // the contents are on the first fd
		}
		if s.tree.deleted == nil {
			s.tree.deleted = map[FileID]bool{}
		}
		s.tree.deleted[id] = true
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
		dir := filepath.Dir(fd.Path)
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
	return Access{
		Path: filepath.Dir(fd.Path), Flags: unix.O_RDONLY | unix.O_DIRECTORY, Type: unix.S_IFDIR,
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
	dirfd, err := OpenIn(c.r, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, ids[0])
	if err != nil {
		return pipeHome{}, err
	}
	var tmp uint64
	if fd.Mode&unix.S_IFMT == unix.S_IFDIR {
		tmp, err = createDeletedDir(c, dirfd)
	} else {
		var dot uint64
		if dot, err = c.r.PutString(ptrace.DataOff, "."); err == nil {
			tmp, err = c.r.Syscall(unix.SYS_OPENAT, uint64(dirfd), dot, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
	}
	if cerr := c.r.Close(dirfd); err == nil {
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
	if fd.Mode&unix.S_IFMT == unix.S_IFDIR {
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
func createDeletedDir(c *restoreCtx, dirfd int) (uint64, error) {
	name := fmt.Sprintf(".rtcr-deleted-%d-%d", c.r.Pid, time.Now().UnixNano())
	addr, err := c.r.PutString(ptrace.DataOff, name)
	if err != nil {
		return 0, err
	}
	if _, err := c.r.Syscall(unix.SYS_MKDIRAT, uint64(dirfd), addr, 0o700); err != nil {
		return 0, fmt.Errorf("mkdir %s: %w", name, err)
	}
	got, err := c.r.Syscall(unix.SYS_OPENAT, uint64(dirfd), addr, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if _, rerr := c.r.Syscall(unix.SYS_UNLINKAT, uint64(dirfd), addr, unix.AT_REMOVEDIR); err == nil && rerr != nil {
		_ = c.r.Close(int(got))
		err = fmt.Errorf("rmdir %s: %w", name, rerr)
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", name, err)
	}
	return got, nil
}
