package ptrace

import (
	"fmt"
	"syscall"

	"github.com/rtcr/rtcr/internal/abi"

	"golang.org/x/sys/unix"
)

// Injector runs system calls inside a stopped thread. It saves the thread's
// registers and signal mask when created, blocks every signal while it
// works (so no handler runs in the middle of an injected call), and puts
// both back on Restore.
type Injector struct {
	// Tid is the thread's id as rtcr sees it; NsTid the id the thread
	// sees itself, in its pid namespace.
	Tid, NsTid int
	// SyscallAddr is the address of a `syscall` instruction (0f 05) in the
	// tracee; injected calls execute it with PTRACE_SINGLESTEP.
	SyscallAddr uint64
	// EventMsg is the message of the last ptrace event seen during a call
	// (the new tid after an injected clone3).
	EventMsg  uint
	saved     unix.PtraceRegs
	savedMask uint64
	held      []syscall.Signal // signals that stopped an injected call
	live      *live            // set for a live process (NewLiveInjector)
}

// NewInjector prepares tid, which must be in a ptrace stop, for injection.
// Calls run with PTRACE_SINGLESTEP, whose trap flag outlives a dying
// tracer: use it only for processes that die with rtcr (restore stubs);
// live processes take NewLiveInjector.
func NewInjector(tid int, syscallAddr uint64) (*Injector, error) {
	regs, err := GetRegs(tid)
	if err != nil {
		return nil, err
	}
	mask, err := GetSigMask(tid)
	if err != nil {
		return nil, err
	}
	if err := SetSigMask(tid, ^uint64(0)); err != nil {
		return nil, err
	}
	return &Injector{Tid: tid, NsTid: tid, SyscallAddr: syscallAddr, saved: regs, savedMask: mask}, nil
}

// Saved returns the registers the thread had when the injector was made.
func (in *Injector) Saved() unix.PtraceRegs { return in.saved }

// SavedXState returns a copy of the xsave area a live injector read when
// it was made (nil for other injectors, or once it was put back).
func (in *Injector) SavedXState() []byte {
	if in.live == nil || in.live.xs == nil {
		return nil
	}
	return append([]byte(nil), in.live.xs...)
}

// SavedMask returns the signal mask the thread had when the injector was made.
func (in *Injector) SavedMask() uint64 { return in.savedMask }

// Syscall runs system call nr with up to six arguments in the thread and
// returns its result. A negative kernel result becomes a syscall.Errno.
func (in *Injector) Syscall(nr uint64, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("inject syscall %d: %d arguments", nr, len(args))
	}
	var a [6]uint64
	copy(a[:], args)
	if in.live != nil {
		return in.liveSyscall(nr, a)
	}
	r := in.saved
	r.Rip = in.SyscallAddr
	r.Rax = nr
	// orig_rax = -1: the stop we resume from must not be treated as an
	// interrupted system call to restart.
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := SetRegs(in.Tid, &r); err != nil {
		return 0, err
	}
	if err := in.runTo(nr, unix.PtraceSingleStep, syscall.SIGTRAP); err != nil {
		return 0, err
	}
	out, err := GetRegs(in.Tid)
	if err != nil {
		return 0, err
	}
	if out.Rip != in.SyscallAddr+2 {
		return 0, fmt.Errorf("inject syscall %d into %d: stopped at %#x, want %#x", nr, in.Tid, out.Rip, in.SyscallAddr+2)
	}
	if ret := int64(out.Rax); ret < 0 && ret > -4096 {
		return 0, syscall.Errno(-ret)
	}
	return out.Rax, nil
}

// runTo resumes the thread with resume until it stops with signal want:
// a ptrace event on the way (clone, fork …) is noted in EventMsg; any
// other signal is one rtcr's mask cannot block (SIGSTOP from outside),
// held to be sent again on Restore. Blocked signals stay pending by
// themselves.
func (in *Injector) runTo(nr uint64, resume func(tid int) error, want syscall.Signal) error {
	for {
		if err := resume(in.Tid); err != nil {
			return fmt.Errorf("inject syscall %d into %d: resume: %w", nr, in.Tid, err)
		}
		ws, err := Wait(in.Tid)
		if err != nil {
			return fmt.Errorf("inject syscall %d into %d: %w", nr, in.Tid, err)
		}
		switch {
		case !ws.Stopped():
		case event(ws) > 0:
			// A group-stop (event STOP) carries no message worth keeping.
			if msg, err := unix.PtraceGetEventMsg(in.Tid); err == nil && event(ws) != abi.PTRACE_EVENT_STOP {
				in.EventMsg = msg
			}
		case ws.StopSignal() == want:
			return nil
		default:
			in.held = append(in.held, ws.StopSignal())
		}
	}
}

// Restore puts back the registers and signal mask saved by NewInjector
// (or NewLiveInjector).
func (in *Injector) Restore() error {
	if in.live != nil {
		return in.disarm(nil)
	}
	if err := SetRegs(in.Tid, &in.saved); err != nil {
		return err
	}
	if err := SetSigMask(in.Tid, in.savedMask); err != nil {
		return err
	}
	// Signals that arrived during injected calls are sent again, to be
	// delivered once the thread runs.
	for _, sig := range in.held {
		if _, _, e := unix.Syscall(unix.SYS_TKILL, uintptr(in.Tid), uintptr(sig), 0); e != 0 {
			return fmt.Errorf("send %v again to %d: %w", sig, in.Tid, e)
		}
	}
	in.held = nil
	return nil
}
