package attr

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// membarrier commands (include/uapi/linux/membarrier.h): the registration
// commands are the bits of what GET_REGISTRATIONS returns.
const (
	membarrierGetRegistrations = 1 << 9 // MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3)
	membarrierRegistrations    = 1<<2 | 1<<4 | 1<<6 | 1<<8
)

// prctl options for transparent huge pages and memory-deny-write-execute
// (include/uapi/linux/prctl.h).
const (
	prSetTHPDisable = 41 // PR_SET_THP_DISABLE
	prGetTHPDisable = 42 // PR_GET_THP_DISABLE
	prSetMDWE       = 65 // PR_SET_MDWE
	prGetMDWE       = 66 // PR_GET_MDWE
)

// DumpSched returns the scheduling state of thread tid, read from outside
// with sched_getattr: policy, reset-on-fork and deadline flags, nice,
// real-time priority, deadline parameters and utilization clamps.
func DumpSched(tid int) (*image.Sched, error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return nil, fmt.Errorf("sched_getattr of thread %d: %w", tid, err)
	}
	return &image.Sched{
		Policy: a.Policy, Flags: a.Flags & (unix.SCHED_FLAG_RESET_ON_FORK | unix.SCHED_FLAG_RECLAIM | unix.SCHED_FLAG_DL_OVERRUN),
		Nice: a.Nice, Priority: a.Priority, Runtime: a.Runtime, Deadline: a.Deadline, Period: a.Period,
		UtilMin: a.Util_min, UtilMax: a.Util_max,
	}, nil
}

// RestoreSched gives thread tid (rtcr's view of its id) the scheduling
// state s with sched_setattr, from outside, unless it has it already (a
// restorer without CAP_SYS_NICE can restore the defaults). A nil s (older
// images) leaves the thread as it is.
func RestoreSched(tid int, s *image.Sched) error {
	if s == nil {
		return nil
	}
	cur, err := DumpSched(tid)
	if err != nil {
		return err
	}
	if *cur == *s {
		return nil
	}
	a := unix.SchedAttr{
		Size: unix.SizeofSchedAttr, Policy: s.Policy, Flags: s.Flags,
		Nice: s.Nice, Priority: s.Priority, Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period,
	}
	// A kernel without utilization clamping reports 0 and 0: nothing to set.
	if s.UtilMin != cur.UtilMin || s.UtilMax != cur.UtilMax {
		if s.UtilMin != 0 || s.UtilMax != 0 {
			a.Flags |= unix.SCHED_FLAG_UTIL_CLAMP
			a.Util_min, a.Util_max = s.UtilMin, s.UtilMax
		}
	}
	if err := unix.SchedSetAttr(tid, &a, 0); err != nil {
		return fmt.Errorf("sched_setattr of thread %d (policy %d, flags %#x, nice %d, priority %d): %w",
			tid, s.Policy, s.Flags, s.Nice, s.Priority, err)
	}
	return nil
}

// dumpOomTHP reads the OOM score adjustment of r's process from /proc,
// and queues in b the calls that read its THP-disable setting and
// membarrier registrations; done stores them in p once b ran.
func dumpOomTHP(r *ptrace.Remote, b *ptrace.Batch, p *image.Process) (done func() error, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", r.Pid))
	if err != nil {
		return nil, fmt.Errorf("oom_score_adj of %d: %w", r.Pid, err)
	}
	adj, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("oom_score_adj of %d: %w", r.Pid, err)
	}
	p.OomScoreAdj = &adj
	if err := dumpMMAttrs(r.Pid, p); err != nil {
		return nil, err
	}
	thp := b.Add(unix.SYS_PRCTL, prGetTHPDisable, 0, 0, 0, 0)
	mb := b.Add(unix.SYS_MEMBARRIER, membarrierGetRegistrations, 0, 0)
	mdwe := b.Add(unix.SYS_PRCTL, prGetMDWE, 0, 0, 0, 0)
	return func() error {
		if p.THPDisable, err = b.Result(thp); err != nil {
			return fmt.Errorf("prctl(PR_GET_THP_DISABLE) in %d: %w", r.Pid, err)
		}
		if p.Membarrier, err = b.Result(mb); err != nil {
			return fmt.Errorf("membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) in %d: %w", r.Pid, err)
		}
		// Before Linux 6.3 there is no PR_GET_MDWE, nor MDWE.
		v, err := b.Result(mdwe)
		if errors.Is(err, unix.EINVAL) {
			v, err = 0, nil
		}
		if err != nil {
			return fmt.Errorf("prctl(PR_GET_MDWE) in %d: %w", r.Pid, err)
		}
		p.MDWE = uint32(v)
		return nil
	}, nil
}

// restoreOomTHP sets the OOM score adjustment (through /proc, from
// outside: lowering it needs CAP_SYS_RESOURCE, which rtcr may have and the
// stub's later credentials not), the THP-disable setting and the membarrier
// registrations of r's process.
func restoreOomTHP(r *ptrace.Remote, p *image.Process) error {
	if p.OomScoreAdj != nil {
		path := fmt.Sprintf("/proc/%d/oom_score_adj", r.Pid)
		if err := os.WriteFile(path, []byte(strconv.Itoa(*p.OomScoreAdj)), 0); err != nil {
			return fmt.Errorf("restore oom_score_adj %d of %d: %w", *p.OomScoreAdj, r.Pid, err)
		}
	}
	if p.THPDisable != 0 {
		if _, err := r.Syscall(unix.SYS_PRCTL, prSetTHPDisable, 1, p.THPDisable&^1, 0, 0); err != nil {
			return fmt.Errorf("restore prctl(PR_SET_THP_DISABLE, 1, %#x) of %d: %w", p.THPDisable&^1, r.Pid, err)
		}
	}
	if err := restoreMMAttrs(r, p); err != nil {
		return err
	}
	for bit := uint64(1); bit <= membarrierRegistrations; bit <<= 1 {
		if p.Membarrier&bit == 0 {
			continue
		}
		if _, err := r.Syscall(unix.SYS_MEMBARRIER, bit, 0, 0); err != nil {
			return fmt.Errorf("restore membarrier registration (command %#x) of %d: %w", bit, r.Pid, err)
		}
	}
	return nil
}
