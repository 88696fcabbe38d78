package rtcr

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// armExitKill sets PTRACE_O_EXITKILL on every thread of the frozen tree
// f (DumpOptions.killFrozen): from then on the tree never runs again,
// since rtcr does not let it go and the kernel sends each thread SIGKILL
// when its tracer thread exits (rtcr killed included), as surely as if
// it had its SIGKILL already. It reports whether every thread has it;
// when one has not (the tree is then killed at once, as before) the
// reason is logged.
func armExitKill(f *tree.Frozen, log *slog.Logger, root int) bool {
	start := time.Now()
	var live []int
	for _, pid := range f.Order {
		if _, ok := f.Tids[pid]; ok {
			live = append(live, pid)
		}
	}
	err := f.Each(live, func(pid int) error {
		for _, tid := range f.Tids[pid] {
			if err := ptrace.SetOptions(tid, true); err != nil {
				return fmt.Errorf("thread %d of %d: %w", tid, pid, err)
			}
		}
		return nil
	})
	if err != nil {
		log.Warn("exit-kill not armed, the tree is killed before its copy runs", "pid", root, "err", err)
		return false
	}
	logStep(log, root, "exit-kill armed", time.Since(start), "processes", len(live))
	return true
}

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
