package files

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// statelessDevices are character devices reopened by path: they hold no
// per-open state worth saving.
var statelessDevices = map[string]bool{
	"/dev/null": true, "/dev/zero": true, "/dev/full": true,
	"/dev/random": true, "/dev/urandom": true,
}

// pathKind covers files reopened by path: regular files and directories
// (at their offset, with their flags; a regular file may have grown or
// changed since the dump, not shrunk below the offset; one whose name was
// deleted is reopened by another name it has, see otherLink), stateless
// character devices, and symbolic links held by an O_PATH fd (opened with
// O_PATH|O_NOFOLLOW: the fd names the link itself, reopened the same way).
var pathKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		mode := s.st.Mode & unix.S_IFMT
		isDev := mode == unix.S_IFCHR && statelessDevices[s.link]
		// stat of /proc/PID/fd/N follows the fd to its file: the link.
		isLink := mode == unix.S_IFLNK && s.info.Flags&unix.O_PATH != 0
		if mode != unix.S_IFREG && mode != unix.S_IFDIR && !isDev && !isLink {
			return image.FD{}, false, nil
		}
		if !strings.HasPrefix(s.link, "/") {
			return image.FD{}, false, nil
		}
		if isDev && s.info.Pos != 0 {
			// lseek on these devices resets the position to 0.
			return image.FD{}, false, fmt.Errorf("fdinfo pos %d on a device: %w", s.info.Pos, ErrUnsupported)
		}
		desc := s.link
		if gone, ok := strings.CutSuffix(s.link, " (deleted)"); ok {
			// deletedKind took the files with no link left.
			other, err := otherLink(gone, &s.st)
			if err != nil {
				return image.FD{}, false, err
			}
			s.link, desc = other, other+" (opened as "+gone+", deleted since)"
		}
		var now unix.Stat_t
		if err := statPath(s.link, s.st.Mode, &now); err != nil {
			return image.FD{}, false, fmt.Errorf("stat %s: %w", s.link, err)
		}
		if now.Ino != s.st.Ino || now.Dev != s.st.Dev {
			return image.FD{}, false, fmt.Errorf("%s now names another file than the one open: %w", s.link, ErrUnsupported)
		}
		fd := image.FD{Path: s.link, Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Desc: desc}
		if mode == unix.S_IFREG {
			fd.Size = s.st.Size
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		var st unix.Stat_t
		if err := statPath(fd.Path, fd.Mode, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("file %s is gone since the checkpoint", fd.Path)
			}
			return fmt.Errorf("stat %s: %w", fd.Path, err)
		}
		if st.Mode&unix.S_IFMT != fd.Mode&unix.S_IFMT {
			return fmt.Errorf("%s was replaced by another kind of file (%s, was %s)", fd.Path, fileType(st.Mode), fileType(fd.Mode))
		}
		// A file that grew (a log written by others) or whose data changed
		// is reopened at its position; one that shrank below it cannot be.
		// A position beyond the end already at the checkpoint (a file of
		// /proc or /sys, whose size is 0, after a read; an lseek past the
		// end) is set again as it was.
		if fd.Mode&unix.S_IFMT == unix.S_IFREG && fd.Flags&unix.O_PATH == 0 && st.Size < fd.Offset && fd.Size >= fd.Offset {
			return fmt.Errorf("file %s shrank below the position since the checkpoint (%d bytes, position %d; it had %d bytes)", fd.Path, st.Size, fd.Offset, fd.Size)
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		r := c.r
		got, err := openChecked(c, fd)
		if err != nil {
			return -1, err
		}
		// Devices have no position worth restoring; O_PATH fds cannot seek.
		if fd.Mode&unix.S_IFMT == unix.S_IFCHR || fd.Flags&unix.O_PATH != 0 {
			return got, nil
		}
		if _, err := r.Syscall(unix.SYS_LSEEK, uint64(got), uint64(fd.Offset), unix.SEEK_SET); err != nil {
			_ = r.Close(got)
			return -1, fmt.Errorf("seek to %d: %w", fd.Offset, err)
		}
		return got, nil
	},
	pos:   true,
	locks: true,
	// OpenIn opens with every status flag but O_ASYNC, plus O_NONBLOCK.
	exact: func(fd *image.FD) bool { return fd.Flags&(unix.O_NONBLOCK|unix.O_ASYNC) == unix.O_NONBLOCK },
}

// maxLinkSearch is how many entries of a directory otherLink looks at.
const maxLinkSearch = 100000

// otherLink returns another name of the file st, whose name gone was
// removed while it has other links (link, then unlink the first name): a
// name in the directory of gone, the only place rtcr looks (a search of
// the whole file system would cost too much). It is reopened by that name.
func otherLink(gone string, st *unix.Stat_t) (string, error) {
	dir := filepath.Dir(gone)
	f, err := os.Open(dir)
	if err != nil {
		return "", fmt.Errorf("open file %s was deleted but has %d other links; its directory: %w", gone, st.Nlink, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(maxLinkSearch)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("open file %s was deleted but has %d other links; read its directory: %w", gone, st.Nlink, err)
	}
	for _, n := range names {
		var o unix.Stat_t
		p := filepath.Join(dir, n)
		if unix.Lstat(p, &o) == nil && o.Dev == st.Dev && o.Ino == st.Ino {
			return p, nil
		}
	}
	return "", fmt.Errorf("open file %s was deleted but has %d other links, none in its directory: %w", gone, st.Nlink, ErrUnsupported)
}

// statPath stats path, or for a symbolic link (mode, as recorded) the
// link itself.
func statPath(path string, mode uint32, st *unix.Stat_t) error {
	if mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.Lstat(path, st)
	}
	return unix.Stat(path, st)
}

// openChecked opens fd's path in the stub: the file is first checked with
// the credentials c.as (CheckAccess), then the stub, which still has the
// restorer's privileges, opens it without following any link and with
// O_NONBLOCK added (nothing blocks), and the file it got must be the one
// checked (OpenIn). Install then sets the status flags the process had.
func openChecked(c *restoreCtx, fd *image.FD) (int, error) {
	ids, err := CheckAccess(c.as, []Access{fdAccess(fd)})
	if err != nil {
		return -1, err
	}
	flags := fd.Flags
	if fd.Mode&unix.S_IFMT == unix.S_IFLNK {
		flags |= unix.O_NOFOLLOW // the link, not its target
	}
	return OpenIn(c.r, fd.Path, flags, ids[0])
}

// fileType names the type of a file mode in messages.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("mode %#o", mode&unix.S_IFMT)
}
