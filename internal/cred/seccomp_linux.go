package cred

import (
	"errors"
	"fmt"

	"github.com/rtcr/rtcr/internal/procfs"
)

// ErrSeccomp is returned by CheckSeccomp for a thread under seccomp.
var ErrSeccomp = errors.New("seccomp: not supported yet")

// CheckSeccomp refuses a process any of whose threads tids runs under
// seccomp, before anything is injected into it: strict mode kills the
// thread at the first injected call other than read, write, exit and
// sigreturn (the dump would kill its target), and a filter is not saved,
// so the process would come back without it.
func CheckSeccomp(pid int, tids []int) error {
	for _, tid := range tids {
		st, err := procfs.ReadTaskStatus(pid, tid)
		if err != nil {
			return fmt.Errorf("seccomp mode of thread %d of %d: %w", tid, pid, err)
		}
		switch st.Seccomp {
		case 0:
		case 1:
			return fmt.Errorf("thread %d of %d is in seccomp strict mode: %w", tid, pid, ErrSeccomp)
		default:
			return fmt.Errorf("thread %d of %d has a seccomp filter (mode %d): %w", tid, pid, st.Seccomp, ErrSeccomp)
		}
	}
	return nil
}
