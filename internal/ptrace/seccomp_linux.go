package ptrace

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

// SuspendSeccomp sets rtcr's tracer options on tid plus
// PTRACE_O_SUSPEND_SECCOMP (and PTRACE_O_EXITKILL when exitKill is set):
// while rtcr traces the thread, its seccomp filters and strict mode do not
// apply, so calls injected into it are not refused or killed. The kernel
// drops the option with the tracer (detach, or rtcr's death). Needs
// CAP_SYS_ADMIN and a tracer not under seccomp itself.
func SuspendSeccomp(tid int, exitKill bool) error {
	opts := seizeOptions | unix.PTRACE_O_SUSPEND_SECCOMP
	if exitKill {
		opts |= unix.PTRACE_O_EXITKILL
	}
	if err := unix.PtraceSetOptions(tid, opts); err != nil {
		return fmt.Errorf("suspend seccomp of %d (PTRACE_O_SUSPEND_SECCOMP): %w", tid, err)
	}
	return nil
}

// SeccompFilter returns filter index of stopped thread tid (0 is the one
// installed first: the kernel counts from the oldest) as struct sock_filter entries back to back, and its
// flags; ok is false past the oldest filter.
func SeccompFilter(tid, index int) (prog []byte, flags uint64, ok bool, err error) {
	n, err := ptraceRet(unix.PTRACE_SECCOMP_GET_FILTER, tid, uintptr(index), nil)
	if errors.Is(err, unix.ENOENT) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("seccomp filter %d of thread %d (PTRACE_SECCOMP_GET_FILTER): %w", index, tid, err)
	}
	if n == 0 || n > 4096 {
		return nil, 0, false, fmt.Errorf("seccomp filter %d of thread %d: %d instructions", index, tid, n)
	}
	prog = make([]byte, 8*n)
	m, err := ptraceRet(unix.PTRACE_SECCOMP_GET_FILTER, tid, uintptr(index), unsafe.Pointer(&prog[0]))
	if err != nil {
		return nil, 0, false, fmt.Errorf("seccomp filter %d of thread %d (PTRACE_SECCOMP_GET_FILTER): %w", index, tid, err)
	}
	if m != n {
		return nil, 0, false, fmt.Errorf("seccomp filter %d of thread %d: %d instructions, then %d", index, tid, n, m)
	}
	md := abi.SeccompMetadata{FilterOff: uint64(index)}
	if _, err := ptraceRet(abi.PTRACE_GET_SECCOMP_METADATA, tid, unsafe.Sizeof(md), unsafe.Pointer(&md)); err != nil {
		return nil, 0, false, fmt.Errorf("flags of seccomp filter %d of thread %d (PTRACE_GET_SECCOMP_METADATA): %w", index, tid, err)
	}
	return prog, md.Flags, true, nil
}

// ptraceRet is ptracePtr returning the call's result.
func ptraceRet(req int, tid int, addr uintptr, data unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
