package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// GetFD returns rtcr's own copy of fd num of process pid (pidfd_getfd,
// which asks for the same access as PTRACE_ATTACH). The copy shares the
// open file; the caller closes it.
func GetFD(pid, num int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, num, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd fd %d of %d: %w", num, pid, err)
	}
	return dup, nil
}
