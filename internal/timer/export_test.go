package timer

import (
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
)

// RestoreLinear is Restore forced onto the fallback for kernels without
// PR_TIMER_CREATE_RESTORE_IDS (create and delete until the id comes).
func RestoreLinear(r *ptrace.Remote, its []image.Itimer, pts []image.PosixTimer) error {
	return restore(r, its, pts, true)
}
