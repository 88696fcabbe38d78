package cred

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrSeccomp is returned for seccomp state rtcr cannot restore exactly.
var ErrSeccomp = errors.New("seccomp: not supported")

// Seccomp modes as /proc/PID/status shows them.
const (
	modeDisabled = 0
	modeStrict   = 1
	modeFilter   = 2
)

// Seccomp is the seccomp state of one process as the dump reads it.
type Seccomp struct {
	// Strict holds the threads in strict mode.
	Strict map[int]bool
	// Filters is the chain every thread has, oldest first.
	Filters []image.SeccompFilter
}

// DumpSeccomp reads the seccomp state of process pid, whose threads tids
// are frozen by rtcr: the mode of each thread and, for filter mode, every
// filter of every thread (PTRACE_SECCOMP_GET_FILTER) with its flags
// (PTRACE_GET_SECCOMP_METADATA). It returns nil when no thread is under
// seccomp. It refuses, naming the thread, what a restore could not bring
// back the same:
//   - threads with different chains, or some with a chain and some
//     without: the restore installs one chain with SECCOMP_FILTER_FLAG_TSYNC
//     so that the threads share it again, as threads that inherited it do;
//   - filter and strict threads in one process;
//   - a filter that can return SECCOMP_RET_USER_NOTIF (its listener, an fd
//     of this or another process, is not restored) or whose return value
//     comes from the accumulator (rtcr cannot tell what it returns).
//
// Threads in different processes may have the same or different chains:
// each process gets its own copy (the kernel's sharing across processes
// is not visible to them).
//
// The caller must then suspend seccomp in every thread
// (ptrace.SuspendSeccomp) before anything is injected: strict mode kills
// a thread at its first other call, and a filter may refuse or kill any.
func DumpSeccomp(pid int, tids []int) (*Seccomp, error) {
	modes := make([]int, len(tids))
	some := false
	for i, tid := range tids {
		mode, err := procfs.ReadTaskSeccomp(pid, tid)
		if err != nil {
			return nil, fmt.Errorf("seccomp mode of thread %d of %d: %w", tid, pid, err)
		}
		switch mode {
		case modeDisabled, modeStrict, modeFilter:
		default:
			return nil, fmt.Errorf("thread %d of %d: seccomp mode %d unknown: %w", tid, pid, mode, ErrSeccomp)
		}
		modes[i] = mode
		some = some || mode != modeDisabled
	}
	if !some {
		return nil, nil
	}
	s := &Seccomp{Strict: map[int]bool{}}
	first := -1 // index of the first thread in filter mode
	for i, tid := range tids {
		switch modes[i] {
		case modeStrict:
			s.Strict[tid] = true
		case modeFilter:
			chain, err := readChain(tid)
			if err != nil {
				return nil, fmt.Errorf("process %d: %w", pid, err)
			}
			if first < 0 {
				first, s.Filters = i, chain
			} else if !sameChain(chain, s.Filters) {
				return nil, fmt.Errorf("thread %d of %d has other seccomp filters than thread %d (%d filters, %d): %w",
					tid, pid, tids[first], len(chain), len(s.Filters), ErrSeccomp)
			}
		}
	}
	if first >= 0 {
		for i, tid := range tids {
			if modes[i] != modeFilter {
				return nil, fmt.Errorf("thread %d of %d has no seccomp filter (mode %d), thread %d has %d: %w",
					tid, pid, modes[i], tids[first], len(s.Filters), ErrSeccomp)
			}
		}
	}
	for i, f := range s.Filters {
		if err := checkProg(f.Prog); err != nil {
			return nil, fmt.Errorf("seccomp filter %d (oldest 0) of process %d: %w", i, pid, err)
		}
	}
	return s, nil
}

// readChain reads the filters of stopped thread tid, oldest first (the
// kernel's get_nth_filter counts from the oldest: index 0 is the first
// filter installed, whatever ptrace(2) says).
func readChain(tid int) ([]image.SeccompFilter, error) {
	var chain []image.SeccompFilter
	for i := 0; ; i++ {
		prog, flags, ok, err := ptrace.SeccompFilter(tid, i)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		chain = append(chain, image.SeccompFilter{Flags: flags, Prog: prog})
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("thread %d is in seccomp filter mode but has no filter: %w", tid, ErrSeccomp)
	}
	return chain, nil
}

// sameChain reports whether two chains have the same filters and flags.
func sameChain(a, b []image.SeccompFilter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Flags != b[i].Flags || !bytes.Equal(a[i].Prog, b[i].Prog) {
			return false
		}
	}
	return true
}

// Classic BPF return instructions (include/uapi/linux/filter.h).
const (
	bpfClassMask = 0x07
	bpfRet       = 0x06
	bpfSrcMask   = 0x18
	bpfA         = 0x10
)

// checkProg refuses a filter that may hand a call to a user-space
// listener: a return of SECCOMP_RET_USER_NOTIF, or of the accumulator.
func checkProg(prog []byte) error {
	for off := 0; off+8 <= len(prog); off += 8 {
		code := binary.LittleEndian.Uint16(prog[off:])
		k := binary.LittleEndian.Uint32(prog[off+4:])
		if code&bpfClassMask != bpfRet {
			continue
		}
		if code&bpfSrcMask == bpfA {
			return fmt.Errorf("instruction %d returns the accumulator, rtcr cannot tell whether it is SECCOMP_RET_USER_NOTIF: %w", off/8, ErrSeccomp)
		}
		if k&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_USER_NOTIF {
			return fmt.Errorf("instruction %d returns SECCOMP_RET_USER_NOTIF: its listener is not restored: %w", off/8, ErrSeccomp)
		}
	}
	return nil
}

// SuspendAll suspends seccomp (ptrace.SuspendSeccomp) in every thread of
// a process; exitKill is set for restore stubs.
func SuspendAll(tids []int, exitKill bool) error {
	for _, tid := range tids {
		if err := ptrace.SuspendSeccomp(tid, exitKill); err != nil {
			return err
		}
	}
	return nil
}

// RestoreSeccomp installs the seccomp state of process p in its stub,
// whose threads are ins (in the order of p.Threads) and whose seccomp the
// caller has suspended (SuspendAll) in every thread: from then on, until
// the detach, no filter or strict mode applies to the calls rtcr injects.
//
// It must run while the stub's threads are still root with every
// capability, that is before Restore: installing a filter needs
// CAP_SYS_ADMIN or no_new_privs, and the image's process may have had
// neither any more (it installed its filters, then dropped root, as zdtm's
// seccomp_filter does). The filters take effect when rtcr detaches.
//
// The chain is installed oldest first by the leader with
// SECCOMP_FILTER_FLAG_TSYNC when the process has several threads, so that
// all threads share one chain again (a later TSYNC of the program's own
// works as before); strict mode is set in each of its threads. Every
// thread's mode and filters are then read back and compared.
func RestoreSeccomp(r *ptrace.Remote, ins []*ptrace.Injector, p *image.Process) error {
	if len(ins) != len(p.Threads) {
		return fmt.Errorf("restore seccomp of %d: %d threads, image has %d", r.Pid, len(ins), len(p.Threads))
	}
	for i, f := range p.SeccompFilters {
		if err := installFilter(r, ins, i, f); err != nil {
			return err
		}
	}
	for i, th := range p.Threads {
		if !th.SeccompStrict {
			continue
		}
		if _, err := ins[i].Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_STRICT, 0, 0); err != nil {
			return fmt.Errorf("restore seccomp of %d, tid %d: seccomp(SECCOMP_SET_MODE_STRICT): %w", r.Pid, ins[i].Tid, err)
		}
	}
	return verifySeccomp(r.Pid, ins, p)
}

// installFilter installs filter i of the chain through the leader.
func installFilter(r *ptrace.Remote, ins []*ptrace.Injector, i int, f image.SeccompFilter) error {
	progAddr, err := r.Put(ptrace.DataOff+16, f.Prog)
	if err != nil {
		return fmt.Errorf("restore seccomp filter %d of %d: %w", i, r.Pid, err)
	}
	var fprog [16]byte // struct sock_fprog: u16 len, padding, pointer
	binary.LittleEndian.PutUint16(fprog[0:], uint16(len(f.Prog)/8))
	binary.LittleEndian.PutUint64(fprog[8:], progAddr)
	addr, err := r.Put(ptrace.DataOff, fprog[:])
	if err != nil {
		return fmt.Errorf("restore seccomp filter %d of %d: %w", i, r.Pid, err)
	}
	flags := f.Flags
	if len(ins) > 1 {
		flags |= unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	v, err := r.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, addr)
	if err != nil {
		return fmt.Errorf("restore seccomp filter %d of %d: seccomp(SECCOMP_SET_MODE_FILTER, %#x): %w", i, r.Pid, flags, err)
	}
	if v != 0 {
		// TSYNC reports the thread it could not synchronise.
		return fmt.Errorf("restore seccomp filter %d of %d: thread %d could not share it (TSYNC): %w", i, r.Pid, v, ErrSeccomp)
	}
	return nil
}

// verifySeccomp reads back every thread's seccomp mode and filters.
func verifySeccomp(pid int, ins []*ptrace.Injector, p *image.Process) error {
	for i, in := range ins {
		want := modeDisabled
		switch {
		case len(p.SeccompFilters) > 0:
			want = modeFilter
		case p.Threads[i].SeccompStrict:
			want = modeStrict
		}
		st, err := procfs.ReadTaskStatus(pid, in.Tid)
		if err != nil {
			return fmt.Errorf("restore seccomp of %d, tid %d: %w", pid, in.Tid, err)
		}
		if st.Seccomp != want {
			return fmt.Errorf("restore seccomp of %d, tid %d: mode %d, want %d: %w", pid, in.Tid, st.Seccomp, want, ErrSeccomp)
		}
		if want != modeFilter {
			continue
		}
		chain, err := readChain(in.Tid)
		if err != nil {
			return fmt.Errorf("restore seccomp of %d: %w", pid, err)
		}
		if !sameChain(chain, p.SeccompFilters) {
			return fmt.Errorf("restore seccomp of %d, tid %d: the filters read back (%s) differ from the image (%s): %w",
				pid, in.Tid, describe(chain), describe(p.SeccompFilters), ErrSeccomp)
		}
	}
	return nil
}

// describe lists a chain's filters as instruction counts and flags.
func describe(chain []image.SeccompFilter) string {
	var b strings.Builder
	for i, f := range chain {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d instructions flags %#x", len(f.Prog)/8, f.Flags)
	}
	return b.String()
}
