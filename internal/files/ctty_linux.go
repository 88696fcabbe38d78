package files

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// cttyRdev is /dev/tty's device number (5:0).
var cttyRdev = unix.Mkdev(5, 0)

// cttyKind covers an fd on /dev/tty, which the kernel gives the process's
// controlling terminal at open time (zdtm pty00). Dump asks the terminal
// it reaches (TIOCGDEV on a pidfd_getfd copy) and requires it to be the
// process's controlling terminal now, else refuses (the fd would reach
// another terminal after the restore). Restore opens /dev/tty in the stub,
// whose session has its controlling terminal again by then (a pty pair of
// the tree, made again, or the restorer's terminal: see the session
// leader's setsid), and checks it reaches the stub's controlling terminal.
var cttyKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "/dev/tty" || s.st.Mode&unix.S_IFMT != unix.S_IFCHR || s.st.Rdev != cttyRdev {
			return image.FD{}, false, nil
		}
		dup, err := s.copy()
		if err != nil {
			return image.FD{}, false, err
		}
		defer unix.Close(dup)
		dev, err := unix.IoctlGetUint32(dup, unix.TIOCGDEV)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("/dev/tty: its terminal (TIOCGDEV): %w", err)
		}
		st, err := procfs.ReadStat(s.pid)
		if err != nil {
			return image.FD{}, false, err
		}
		if st.TtyNr == 0 || uint64(dev) != st.TtyNr {
			return image.FD{}, false, fmt.Errorf("/dev/tty opened on terminal %d:%d, the process's controlling terminal is %d:%d (0:0: none): %w",
				unix.Major(uint64(dev)), unix.Minor(uint64(dev)), unix.Major(st.TtyNr), unix.Minor(st.TtyNr), ErrUnsupported)
		}
		return image.FD{Path: "/dev/tty", Flags: s.info.Flags, Mode: s.st.Mode, Desc: "/dev/tty (the controlling terminal)"}, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		flags := fd.Flags&unix.O_ACCMODE | unix.O_NOCTTY | unix.O_CLOEXEC | unix.O_NONBLOCK
		got, err := c.r.OpenAt("/dev/tty", flags, 0)
		if err != nil {
			return -1, fmt.Errorf("%w (has the process its controlling terminal?)", err)
		}
		mine, err := getfd(c.r.Pid, got)
		if err != nil {
			return -1, err
		}
		defer unix.Close(mine)
		dev, err := unix.IoctlGetUint32(mine, unix.TIOCGDEV)
		if err != nil {
			return -1, fmt.Errorf("/dev/tty: its terminal (TIOCGDEV): %w", err)
		}
		st, err := procfs.ReadStat(c.r.Pid)
		if err != nil {
			return -1, err
		}
		if uint64(dev) != st.TtyNr {
			return -1, fmt.Errorf("/dev/tty reaches terminal %d:%d, not the process's controlling terminal %d:%d",
				unix.Major(uint64(dev)), unix.Minor(uint64(dev)), unix.Major(st.TtyNr), unix.Minor(st.TtyNr))
		}
		return got, nil
	},
}
