package files

import (
	"errors"
	"fmt"
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
// (at their offset, with their flags; a regular file must have the size
// it had at dump, or a larger one if it is open for appending) and
// stateless character devices.
var pathKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		mode := s.st.Mode & unix.S_IFMT
		isDev := mode == unix.S_IFCHR && statelessDevices[s.link]
		if mode != unix.S_IFREG && mode != unix.S_IFDIR && !isDev {
			return image.FD{}, false, nil
		}
		if !strings.HasPrefix(s.link, "/") {
			return image.FD{}, false, nil
		}
		if isDev && s.info.Pos != 0 {
			// lseek on these devices resets the position to 0.
			return image.FD{}, false, fmt.Errorf("fdinfo pos %d on a device: %w", s.info.Pos, ErrUnsupported)
		}
		if strings.HasSuffix(s.link, " (deleted)") {
			return image.FD{}, false, fmt.Errorf("open file was deleted: %w", ErrUnsupported)
		}
		var now unix.Stat_t
		if err := unix.Stat(s.link, &now); err != nil {
			return image.FD{}, false, fmt.Errorf("stat %s: %w", s.link, err)
		}
		if now.Ino != s.st.Ino || now.Dev != s.st.Dev {
			return image.FD{}, false, fmt.Errorf("%s now names another file than the one open: %w", s.link, ErrUnsupported)
		}
		fd := image.FD{Path: s.link, Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Desc: s.link}
		if mode == unix.S_IFREG {
			fd.Size = s.st.Size
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		var st unix.Stat_t
		if err := unix.Stat(fd.Path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("file %s has vanished since the checkpoint", fd.Path)
			}
			return fmt.Errorf("stat %s: %w", fd.Path, err)
		}
		if st.Mode&unix.S_IFMT != fd.Mode&unix.S_IFMT {
			return fmt.Errorf("%s is no longer the same type of file (mode %o, was %o)", fd.Path, st.Mode, fd.Mode)
		}
		// A file opened for appending may have grown (a log file written
		// by others): the process appends at the end either way.
		grewAppend := fd.Flags&unix.O_APPEND != 0 && st.Size > fd.Size
		if fd.Mode&unix.S_IFMT == unix.S_IFREG && st.Size != fd.Size && !grewAppend {
			return fmt.Errorf("file %s changed size since the checkpoint (%d bytes, was %d)", fd.Path, st.Size, fd.Size)
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
	return OpenIn(c.r, fd.Path, fd.Flags, ids[0])
}
