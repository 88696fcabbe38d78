// Package task holds a thread's state: general and xsave registers, signal
// mask, rseq registration, clear-tid address, alternate signal stack and
// name — dump and restore side by side — and the rule that makes a thread
// stopped inside a system call re-enter it after restore.
package task

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

// noSyscall is orig_rax when the thread is not inside a system call.
const noSyscall = ^uint64(0)

// AdjustRestart rewrites the registers of a thread stopped inside a system
// call so that, restored, it re-enters the call, as the kernel does after a
// signal: for -ERESTARTSYS, -ERESTARTNOINTR and -ERESTARTNOHAND, rip goes
// back over the 2-byte `syscall` instruction and rax gets the call number
// again. For -ERESTART_RESTARTBLOCK (nanosleep, clock_nanosleep, poll …)
// the kernel would call restart_syscall with a restart block that does not
// survive a restore, so rtcr re-issues the original call with its original
// arguments: a relative sleep starts over (it can only last longer, never
// return early or fail with EINTR), an absolute one ends on time.
// orig_rax is always cleared, so the kernel applies no restart logic of its
// own to the restored registers. It returns a description of what it did
// ("" when the thread was not in an interrupted call).
func AdjustRestart(r *unix.PtraceRegs) string {
	nr := r.Orig_rax
	r.Orig_rax = noSyscall
	if int64(nr) < 0 {
		return ""
	}
	switch code := -int64(r.Rax); code {
	case abi.ERESTARTSYS, abi.ERESTARTNOINTR, abi.ERESTARTNOHAND, abi.ERESTART_RESTARTBLOCK:
		r.Rax = nr
		r.Rip -= 2
		return fmt.Sprintf("%s interrupted (%s), re-entered on restore", syscallName(nr), restartName(code))
	}
	return ""
}

func restartName(code int64) string {
	switch code {
	case abi.ERESTARTSYS:
		return "ERESTARTSYS"
	case abi.ERESTARTNOINTR:
		return "ERESTARTNOINTR"
	case abi.ERESTARTNOHAND:
		return "ERESTARTNOHAND"
	}
	return "ERESTART_RESTARTBLOCK"
}

// syscallNames names the calls a stopped thread is usually blocked in.
var syscallNames = map[uint64]string{
	0: "read", 1: "write", 7: "poll", 17: "pread64", 18: "pwrite64", 23: "select",
	34: "pause", 35: "nanosleep", 43: "accept", 45: "recvfrom", 47: "recvmsg",
	61: "wait4", 128: "rt_sigtimedwait", 130: "rt_sigsuspend", 202: "futex",
	230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6",
	271: "ppoll", 281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2",
}

func syscallName(nr uint64) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return fmt.Sprintf("syscall %d", nr)
}
