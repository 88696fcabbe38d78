package files

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// pidfdThread is PIDFD_THREAD (O_EXCL): a pidfd on a thread.
const pidfdThread = unix.O_EXCL

// pidfdKind covers pidfds (pidfd_open, clone's CLONE_PIDFD) on a live
// process of the tree: fdinfo "Pid" names it in rtcr's pid namespace, the
// image by its pid in the tree's. Restore opens a pidfd on the restored
// process, which every stub can name by its pid in the image (each exists
// before any fd is restored), with the flags pidfd_open takes
// (PIDFD_NONBLOCK, PIDFD_THREAD). A pidfd on a process outside the tree, a
// zombie, a process that is gone (Pid -1), or a thread other than a leader
// is refused: the restored fd could not name the same process.
var pidfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[pidfd]" {
			return image.FD{}, false, nil
		}
		pid, err := strconv.Atoi(strings.TrimSpace(s.info.Extra["Pid"]))
		if err != nil {
			return image.FD{}, false, fmt.Errorf("pidfd without a Pid in fdinfo: %w", errBadFdinfo)
		}
		if pid <= 0 {
			return image.FD{}, false, fmt.Errorf("pidfd on a process that is gone (Pid %d): %w", pid, ErrUnsupported)
		}
		if !s.tree.threads[pid] {
			return image.FD{}, false, fmt.Errorf("pidfd on process %d, outside the dumped tree: %w", pid, ErrUnsupported)
		}
		st, err := procfs.ReadStatus(pid)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("pidfd on %d: %w", pid, err)
		}
		if st.Tgid != pid {
			return image.FD{}, false, fmt.Errorf("pidfd on thread %d of process %d: %w", pid, st.Tgid, ErrUnsupported)
		}
		return image.FD{Flags: s.info.Flags, Desc: fmt.Sprintf("%s (process %d)", s.link, pid), PidfdOf: pid}, true, nil
	},
	check: func(fd *image.FD) error {
		if fd.PidfdOf <= 0 {
			return fmt.Errorf("pidfd on pid %d", fd.PidfdOf)
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		flags := uint64(fd.Flags & (unix.O_NONBLOCK | pidfdThread))
		got, err := c.r.Syscall(unix.SYS_PIDFD_OPEN, uint64(fd.PidfdOf), flags)
		if err != nil {
			return -1, fmt.Errorf("pidfd_open %d: %w", fd.PidfdOf, err)
		}
		return int(got), nil
	},
	fields: []string{"Pid", "NSpid"},
	exact:  func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}
