package files

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// The ways an fd of one process is had in another, in one place: rtcr's
// own copy of an fd of the target (dump) or of a stub (restore), and a
// stub's copy of an fd of itself or of another stub of the tree. A copy
// made with pidfd_getfd or dup shares the open file: its offset, flags,
// and, for sockets and pipes, the object.

// copy returns rtcr's own copy of fd s of the dumped process, through the
// pidfd the tree holds for it. The caller closes it.
func (s *fdState) copy() (int, error) {
	dup, err := unix.PidfdGetfd(s.pidfd, s.num, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd fd %d of %d: %w", s.num, s.pid, err)
	}
	return dup, nil
}

// getfd returns rtcr's own copy of fd num of process pid (a stub). The
// caller closes it.
func getfd(pid, num int) (int, error) { return ptrace.GetFD(pid, num) }

// takeIn gives the stub of c a new fd (close-on-exec) on the open file of
// fd num of the stub homePid (nsPid: its pid as the stub sees it): a dup
// when that is the stub itself, else an injected pidfd_open and
// pidfd_getfd (the stubs are root then, and in one pid namespace).
func takeIn(c *restoreCtx, homePid, nsPid, num int) (int, error) {
	if homePid == c.r.Pid {
		got, err := c.r.Syscall(unix.SYS_FCNTL, uint64(num), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("dup fd %d: %w", num, err)
		}
		return int(got), nil
	}
	pidfd, err := c.r.Syscall(unix.SYS_PIDFD_OPEN, uint64(nsPid), 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d (host %d): %w", nsPid, homePid, err)
	}
	got, err := c.r.Syscall(unix.SYS_PIDFD_GETFD, pidfd, uint64(num), 0)
	if cerr := c.r.Close(int(pidfd)); err == nil && cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd fd %d of %d (host %d): %w", num, nsPid, homePid, err)
	}
	return int(got), nil
}
