package attr

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ioprio_get/ioprio_set "which" for one thread (include/uapi/linux/ioprio.h).
const ioprioWhoProcess = 1

// prctl values for the time stamp counter and the machine-check kill
// policy (include/uapi/linux/prctl.h).
const (
	prTSCSigsegv     = 2 // PR_TSC_SIGSEGV
	prMCEKillSet     = 1 // PR_MCE_KILL_SET
	prMCEKillDefault = 2 // PR_MCE_KILL_DEFAULT: no policy of its own
)

// maskWords is the size of the CPU and node masks rtcr reads: 8192 CPUs
// or nodes (image.Thread.Affinity's limit).
const maskWords = 128

// nodeMaskWords is the node mask get_mempolicy fills: 1024 nodes
// (MAX_NUMNODES is at most 1024 on x86-64).
const nodeMaskWords = 16

// DumpThread reads, from outside, the attributes of thread tid that need
// no injected call: its scheduling state, its CPU affinity (kept unless it
// allows every online CPU or is rtcr's own: a cpuset's limit, which the
// restored thread gets from its cgroup) and its I/O priority (kept unless
// it is none set, or the one the kernel derives from the scheduling state
// then: restored, it would stop following the nice value).
func DumpThread(tid int, th *image.Thread) error {
	var err error
	if th.Sched, err = DumpSched(tid); err != nil {
		return err
	}
	mask, err := getAffinity(tid)
	if err != nil {
		return err
	}
	online, err := onlineCPUs()
	if err != nil {
		return err
	}
	own, err := getAffinity(0)
	if err != nil {
		return err
	}
	if !covers(mask, online) && !slices.Equal(mask, own) {
		th.Affinity = trimMask(mask)
	}
	prio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if errno != 0 {
		return fmt.Errorf("ioprio_get of thread %d: %w", tid, errno)
	}
	if uint32(prio) != niceIOPrio(th.Sched) {
		th.IOPrio = uint32(prio)
	}
	return nil
}

// niceIOPrio is what ioprio_get reports for a thread that never set an I/O
// priority and has done I/O (the kernel derives it from the scheduling
// state): the idle class for SCHED_IDLE, real time for the real-time and
// deadline policies, else best effort, at level (nice + 20) / 5.
func niceIOPrio(s *image.Sched) uint32 {
	class := uint32(2)
	switch s.Policy {
	case unix.SCHED_IDLE:
		class = 3
	case unix.SCHED_FIFO, unix.SCHED_RR, 6: // 6: SCHED_DEADLINE
		class = 1
	}
	return class<<13 | uint32(s.Nice+20)/5
}

// ThreadBatch queues in b, which runs in one thread, the calls that read
// the attributes only the thread itself can report: its timer slack, its
// memory policy, its time stamp counter setting and its machine-check kill
// policy. done stores them in th once b ran.
func ThreadBatch(b *ptrace.Batch) (done func(th *image.Thread) error) {
	slack := b.Add(unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	tscAddr, tscOff := b.Out(4)
	tsc := b.Add(unix.SYS_PRCTL, unix.PR_GET_TSC, tscAddr, 0, 0, 0)
	mce := b.Add(unix.SYS_PRCTL, unix.PR_MCE_KILL_GET, 0, 0, 0, 0)
	modeAddr, modeOff := b.Out(8)
	nodesAddr, nodesOff := b.Out(nodeMaskWords * 8)
	pol := b.Add(unix.SYS_GET_MEMPOLICY, modeAddr, nodesAddr, nodeMaskWords*64, 0, 0)
	return func(th *image.Thread) error {
		v, err := b.Result(slack)
		if err != nil {
			return fmt.Errorf("prctl(PR_GET_TIMERSLACK) in thread %d: %w", th.Tid, err)
		}
		th.TimerSlack = v
		// PR_GET_TSC fails on CPUs without the control: nothing to save.
		if _, err := b.Result(tsc); err == nil {
			th.TSCSigsegv = binary.LittleEndian.Uint32(b.Bytes(tscOff, 4)) == prTSCSigsegv
		}
		if v, err = b.Result(mce); err != nil {
			return fmt.Errorf("prctl(PR_MCE_KILL_GET) in thread %d: %w", th.Tid, err)
		}
		if v != prMCEKillDefault {
			policy := int(v)
			th.MCEKill = &policy
		}
		if _, err := b.Result(pol); err != nil {
			return fmt.Errorf("get_mempolicy in thread %d: %w", th.Tid, err)
		}
		mode := binary.LittleEndian.Uint32(b.Bytes(modeOff, 4))
		if mode == unix.MPOL_DEFAULT {
			return nil
		}
		nodes := make([]uint64, nodeMaskWords)
		for i := range nodes {
			nodes[i] = binary.LittleEndian.Uint64(b.Bytes(nodesOff+8*i, 8))
		}
		th.MemPolicy = &image.MemPolicy{Mode: mode, Nodes: trimMask(nodes)}
		return nil
	}
}

// RestoreThread gives thread tid of the stub r (in injects into it) the
// attributes of th: from outside its CPU affinity, scheduling state and
// I/O priority; then, injected, its timer slack, time stamp counter
// setting, machine-check kill policy and memory policy. slack
// is the timer slack the stub's threads started with (a thread that has
// it already gets no call). The affinity comes first: a deadline thread
// needs its whole root domain. The timer slack comes after the
// scheduling state: the kernel zeroes a real-time thread's.
func RestoreThread(in *ptrace.Injector, r *ptrace.Remote, th *image.Thread, slack uint64) error {
	tid := in.Tid
	if th.Affinity != nil {
		cur, err := getAffinity(tid)
		if err != nil {
			return err
		}
		if !slices.Equal(trimMask(cur), th.Affinity) {
			if err := setAffinity(tid, th.Affinity); err != nil {
				return err
			}
		}
	}
	if err := RestoreSched(tid, th.Sched); err != nil {
		return err
	}
	if th.IOPrio != 0 {
		if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(th.IOPrio)); errno != 0 {
			return fmt.Errorf("ioprio_set of thread %d to class %d level %d: %w", tid, th.IOPrio>>13, th.IOPrio&7, errno)
		}
	}
	if th.TimerSlack != 0 && th.TimerSlack != slack {
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, th.TimerSlack, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_TIMERSLACK, %d) in thread %d of %d: %w", th.TimerSlack, tid, r.Pid, err)
		}
	}
	if th.TSCSigsegv {
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_TSC, prTSCSigsegv, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_TSC, PR_TSC_SIGSEGV) in thread %d of %d: %w", tid, r.Pid, err)
		}
	}
	if th.MCEKill != nil {
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_MCE_KILL, prMCEKillSet, uint64(*th.MCEKill), 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_MCE_KILL, PR_MCE_KILL_SET, %d) in thread %d of %d: %w", *th.MCEKill, tid, r.Pid, err)
		}
	}
	if mp := th.MemPolicy; mp != nil {
		var buf []byte
		for _, w := range mp.Nodes {
			buf = binary.LittleEndian.AppendUint64(buf, w)
		}
		var addr uint64
		if len(buf) > 0 {
			var err error
			if addr, err = r.Put(ptrace.DataOff, buf); err != nil {
				return err
			}
		}
		if _, err := in.Syscall(unix.SYS_SET_MEMPOLICY, uint64(mp.Mode), addr, uint64(len(mp.Nodes))*64+1); err != nil {
			return fmt.Errorf("set_mempolicy(mode %#x, nodes %x) in thread %d of %d: %w", mp.Mode, mp.Nodes, tid, r.Pid, err)
		}
	}
	return nil
}

// RestoreMDWE sets memory-deny-write-execute in the stub r if p had it.
// It comes late, once every mapping is in place: from then on no mapping
// may gain execute permission (the stub's scratch area keeps its own).
func RestoreMDWE(r *ptrace.Remote, p *image.Process) error {
	if p.MDWE == 0 {
		return nil
	}
	if _, err := r.Syscall(unix.SYS_PRCTL, prSetMDWE, uint64(p.MDWE), 0, 0, 0); err != nil {
		return fmt.Errorf("restore prctl(PR_SET_MDWE, %#x) of %d: %w", p.MDWE, r.Pid, err)
	}
	return nil
}

// StubTimerSlack returns the timer slack of the stub r's main thread,
// which its other threads were created with: read from
// /proc/PID/timerslack_ns, or, when that is refused (another process's
// needs CAP_SYS_NICE even to be read), asked from inside
// (PR_GET_TIMERSLACK), which costs two ptrace stops.
func StubTimerSlack(r *ptrace.Remote) (uint64, error) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", r.Pid)); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
			return v, nil
		}
	}
	v, err := r.Syscall(unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("prctl(PR_GET_TIMERSLACK) in %d: %w", r.Pid, err)
	}
	return v, nil
}

// getAffinity returns thread tid's CPU affinity mask.
func getAffinity(tid int) ([]uint64, error) {
	mask := make([]uint64, maskWords)
	_, _, errno := unix.RawSyscall(unix.SYS_SCHED_GETAFFINITY, uintptr(tid), maskWords*8, uintptr(unsafe.Pointer(&mask[0])))
	if errno != 0 {
		return nil, fmt.Errorf("sched_getaffinity of thread %d: %w", tid, errno)
	}
	return mask, nil
}

// setAffinity sets thread tid's CPU affinity mask; CPUs of the mask that
// are not online here are dropped by the kernel, none online is an error.
func setAffinity(tid int, mask []uint64) error {
	_, _, errno := unix.RawSyscall(unix.SYS_SCHED_SETAFFINITY, uintptr(tid), uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
	if errno != 0 {
		return fmt.Errorf("sched_setaffinity of thread %d to CPUs %s: %w", tid, maskList(mask), errno)
	}
	return nil
}

// onlineCPUs is the mask of /sys/devices/system/cpu/online, read once.
var onlineCPUs = sync.OnceValues(func() ([]uint64, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("online CPUs: %w", err)
	}
	mask, err := parseList(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("online CPUs %q: %w", data, err)
	}
	return mask, nil
})

// parseList parses a CPU list such as "0-3,8".
func parseList(s string) ([]uint64, error) {
	mask := make([]uint64, maskWords)
	for _, part := range strings.Split(s, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, err
			}
		}
		if a < 0 || b < a || b >= maskWords*64 {
			return nil, fmt.Errorf("range %q out of bounds", part)
		}
		for c := a; c <= b; c++ {
			mask[c/64] |= 1 << (c % 64)
		}
	}
	return mask, nil
}

// covers reports whether mask has every bit of want.
func covers(mask, want []uint64) bool {
	for i, w := range want {
		var m uint64
		if i < len(mask) {
			m = mask[i]
		}
		if w&^m != 0 {
			return false
		}
	}
	return true
}

// trimMask drops the trailing zero words of mask.
func trimMask(mask []uint64) []uint64 {
	n := len(mask)
	for n > 0 && mask[n-1] == 0 {
		n--
	}
	return slices.Clone(mask[:n])
}

// maskList formats mask as a list of bit numbers ("0,3") for messages.
func maskList(mask []uint64) string {
	var parts []string
	for i, w := range mask {
		for b := 0; b < 64; b++ {
			if w&(1<<b) != 0 {
				parts = append(parts, strconv.Itoa(i*64+b))
			}
		}
	}
	return strings.Join(parts, ",")
}
