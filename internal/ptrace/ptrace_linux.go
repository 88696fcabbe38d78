// Package ptrace is rtcr's tracer: it seizes and stops threads, reads and
// writes their registers, and runs system calls inside a stopped thread
// ("injection").
//
// Invariant: the kernel binds a tracee to the OS thread that attached it.
// Every function of this package that takes a tid must therefore be called
// from inside the function passed to Run, which executes on one locked OS
// thread. Remote memory access (ReadMem, WriteMem) has no such restriction.
package ptrace

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/osthread"
	"golang.org/x/sys/unix"
)

// Run executes fn on a goroutine locked to a fresh OS thread (never the
// main one: osthread.Go) and returns its error. Tracees attached inside fn
// must be detached (or dead) before fn returns: the OS thread exits
// afterwards, which would detach them anyway.
func Run(fn func() error) (err error) {
	osthread.Do(func() {
		// The thread ends with fn: no other goroutine ever runs on a
		// tracer thread.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("tracer panic: %v\n%s", r, debug.Stack())
			}
		}()
		err = fn()
	})
	return err
}

func ptrace(req int, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// ptracePtr is ptrace with a pointer as data, converted in the system
// call itself (as x/sys/unix does), so that the Go stack moving meanwhile
// cannot leave the kernel a stale address.
func ptracePtr(req int, tid int, addr uintptr, data unsafe.Pointer) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Options set on every tracee: report clones so restore can follow clone3,
// and mark syscall stops (SIGTRAP|0x80) for live injection.
const seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACESYSGOOD

// Seize attaches to tid with PTRACE_SEIZE, setting rtcr's tracer options,
// without stopping it.
func Seize(tid int) error {
	if err := ptrace(abi.PTRACE_SEIZE, tid, 0, seizeOptions); err != nil {
		return fmt.Errorf("seize %d: %w", tid, err)
	}
	return nil
}

// Interrupt asks a seized thread to stop (PTRACE_INTERRUPT).
func Interrupt(tid int) error {
	if err := unix.PtraceInterrupt(tid); err != nil {
		return fmt.Errorf("interrupt %d: %w", tid, err)
	}
	return nil
}

// SetOptions sets the tracer options rtcr uses on tid; exitKill adds
// PTRACE_O_EXITKILL (used for stubs that must die with rtcr).
func SetOptions(tid int, exitKill bool) error {
	opts := seizeOptions
	if exitKill {
		opts |= unix.PTRACE_O_EXITKILL
	}
	if err := unix.PtraceSetOptions(tid, opts); err != nil {
		return fmt.Errorf("set ptrace options on %d: %w", tid, err)
	}
	return nil
}

// ErrExited reports that a tracee exited or was killed while rtcr waited.
var ErrExited = errors.New("tracee exited")

// Wait waits for the next state change of tid and returns it. An exit or a
// death by signal is returned as an error wrapping ErrExited.
func Wait(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait for %d: %w", tid, err)
		}
		break
	}
	switch {
	case ws.Exited():
		return ws, fmt.Errorf("%d exited with status %d: %w", tid, ws.ExitStatus(), ErrExited)
	case ws.Signaled():
		return ws, fmt.Errorf("%d killed by %v: %w", tid, ws.Signal(), ErrExited)
	}
	return ws, nil
}

// Detach releases tid, letting it run.
func Detach(tid int) error {
	if err := unix.PtraceDetach(tid); err != nil {
		return fmt.Errorf("detach %d: %w", tid, err)
	}
	return nil
}

// GetRegs reads the general registers of tid.
func GetRegs(tid int) (unix.PtraceRegs, error) {
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return r, fmt.Errorf("get registers of %d: %w", tid, err)
	}
	return r, nil
}

// SetRegs writes the general registers of tid (fs/gs base included).
func SetRegs(tid int, r *unix.PtraceRegs) error {
	if err := unix.PtraceSetRegs(tid, r); err != nil {
		return fmt.Errorf("set registers of %d: %w", tid, err)
	}
	return nil
}

// maxXState bounds the NT_X86_XSTATE buffer; the kernel trims it.
const maxXState = 64 << 10

// xstateLen is the size of NT_X86_XSTATE on this machine, once known (the
// same for every thread), so that later reads allocate just that.
var xstateLen atomic.Int64

// GetXState reads the thread's xsave area (FPU, SSE, AVX …).
func GetXState(tid int) ([]byte, error) {
	n := int(xstateLen.Load())
	if n == 0 {
		n = maxXState
	}
	buf := make([]byte, n)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if err := ptracePtr(abi.PTRACE_GETREGSET, tid, unix.NT_X86_XSTATE, unsafe.Pointer(&iov)); err != nil {
		return nil, fmt.Errorf("get xstate of %d: %w", tid, err)
	}
	xstateLen.Store(int64(iov.Len))
	return buf[:iov.Len], nil
}

// SetXState writes the thread's xsave area.
func SetXState(tid int, xs []byte) error {
	if len(xs) == 0 {
		return fmt.Errorf("set xstate of %d: empty xsave area", tid)
	}
	iov := unix.Iovec{Base: &xs[0]}
	iov.SetLen(len(xs))
	if err := ptracePtr(abi.PTRACE_SETREGSET, tid, unix.NT_X86_XSTATE, unsafe.Pointer(&iov)); err != nil {
		return fmt.Errorf("set xstate of %d (%d bytes): %w", tid, len(xs), err)
	}
	return nil
}

// GetSigMask reads the thread's blocked-signal mask.
func GetSigMask(tid int) (uint64, error) {
	var m uint64
	if err := ptracePtr(abi.PTRACE_GETSIGMASK, tid, abi.SigsetSize, unsafe.Pointer(&m)); err != nil {
		return 0, fmt.Errorf("get signal mask of %d: %w", tid, err)
	}
	return m, nil
}

// SetSigMask sets the thread's blocked-signal mask.
func SetSigMask(tid int, m uint64) error {
	if err := ptracePtr(abi.PTRACE_SETSIGMASK, tid, abi.SigsetSize, unsafe.Pointer(&m)); err != nil {
		return fmt.Errorf("set signal mask of %d: %w", tid, err)
	}
	return nil
}

// GetRseq returns the thread's rseq registration; Ptr is 0 when none.
func GetRseq(tid int) (abi.PtraceRseqConfiguration, error) {
	var c abi.PtraceRseqConfiguration
	if err := ptracePtr(abi.PTRACE_GET_RSEQ_CONFIGURATION, tid, unsafe.Sizeof(c), unsafe.Pointer(&c)); err != nil {
		return c, fmt.Errorf("get rseq configuration of %d: %w", tid, err)
	}
	return c, nil
}

// Kill sends SIGKILL to tid and reaps it if it is our child or tracee.
func Kill(tid int) {
	_ = unix.Kill(tid, syscall.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || ws.Exited() || ws.Signaled() {
			return
		}
	}
}
