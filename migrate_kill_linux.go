package rtcr

import (
	"golang.org/x/sys/unix"
)

// idleThreads puts every thread of tids (a frozen tree's, about to be
// SIGKILLed) in the SCHED_IDLE class and returns the function that puts
// each back in the class it had. A migration's source dies while its copy
// starts on the destination; on one host (or a loaded source host) the
// exit of a large process (exit_mmap frees every page) would otherwise
// take a core from the copy. The dying threads run again at their own
// priority once the destination confirmed (before their deaths are
// collected: a tid is not reused before that). A thread whose class
// cannot be read or changed is left as it is; without root nothing is
// changed (leaving SCHED_IDLE needs CAP_SYS_NICE or a RLIMIT_NICE that
// allows it).
func idleThreads(tids map[int][]int) (restore func()) {
	type was struct {
		tid  int
		attr *unix.SchedAttr
	}
	var lowered []was
	if unix.Geteuid() != 0 {
		return func() {}
	}
	for _, ts := range tids {
		for _, tid := range ts {
			attr, err := unix.SchedGetAttr(tid, 0)
			if err != nil || attr.Policy == unix.SCHED_IDLE {
				continue
			}
			idle := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
			if unix.SchedSetAttr(tid, &idle, 0) == nil {
				lowered = append(lowered, was{tid, attr})
			}
		}
	}
	return func() {
		for _, w := range lowered {
			w.attr.Size = unix.SizeofSchedAttr
			_ = unix.SchedSetAttr(w.tid, w.attr, 0)
		}
	}
}
