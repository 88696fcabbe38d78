package ptrace

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

// Injection into a live process (a dump) must survive rtcr being killed at
// any moment. A dying tracer detaches its tracees without a word: each
// thread runs on from the registers it has at that instant. So, from the
// moment rtcr first touches a thread's registers until it has put them
// back, the thread always stands at a sigreturn gadget (`mov $15, %eax;
// syscall`) with rsp at a frame of its own state (see buildFrame):
//
//   - armed: the thread sits in its ptrace stop with rip = gadget.
//   - each call: PTRACE_SYSCALL runs the gadget up to the syscall-entry stop
//     of rt_sigreturn; there rtcr turns the call into the one it wants
//     (orig_rax and arguments) and sets rip back to the gadget, so that
//     when the call returns the thread is at the gadget again; the
//     syscall-exit stop gives the result.
//   - disarm: the signal mask goes back first, then the thread is sent
//     through its own signal path (PTRACE_INTERRUPT, the original
//     registers, PTRACE_CONT) into a plain interrupt stop, exactly as it was
//     frozen, so the kernel's own restart rules apply when it runs.
//
// Killed at any point, the thread either runs rt_sigreturn (and continues
// where it was, its interrupted call made again) or already has its own
// registers. No step flag is ever set: PTRACE_SINGLESTEP's trap flag
// outlives a dying tracer.
type live struct {
	gadget    uint64 // `mov $15, %eax|%rax; syscall`
	gadgetEnd uint64 // just after its syscall
	uc        uint64 // where rsp points while armed: the frame's ucontext
	base      uint64 // where frame is written
	restore   []byte // bytes the frame overwrote at base (nil: rtcr's own memory)
	nextUC    uint64 // a new frame rsp switches to at the next call (0: none)
	nextBase  uint64
	nextSaved []byte
	xs        []byte
	atEntry   bool // stopped at the entry of an injected call, not its exit
	inBatch   bool // running or stopped in a batch (batch_linux.go), not at the gadget
}

// syscallStop is the status of a syscall-entry or -exit stop under
// PTRACE_O_TRACESYSGOOD.
const syscallStop = syscall.SIGTRAP | 0x80

// NewLiveInjector prepares injection into thread tid of a live process,
// which must be in a plain ptrace stop: it writes a sigreturn frame of the
// thread's state at frameBase (saving the bytes there when saveBytes is
// set, to put them back when the frame is no longer needed), then arms the
// thread at gadget (see FindSigreturnGadget) and blocks its signals.
func NewLiveInjector(tid int, g Gadget, frameBase uint64, saveBytes bool) (*Injector, error) {
	if err := refuseShadowStack(tid); err != nil {
		return nil, err
	}
	regs, err := GetRegs(tid)
	if err != nil {
		return nil, err
	}
	if err := rseqAbort(tid, &regs); err != nil {
		return nil, err
	}
	mask, err := GetSigMask(tid)
	if err != nil {
		return nil, err
	}
	xs, err := GetXState(tid)
	if err != nil {
		return nil, err
	}
	lv := &live{gadget: g.Addr, gadgetEnd: g.End, xs: xs}
	in := &Injector{Tid: tid, NsTid: tid, SyscallAddr: g.End - 2, saved: regs, savedMask: mask, live: lv}
	if lv.uc, lv.restore, err = in.placeFrame(frameBase, saveBytes); err != nil {
		return nil, err
	}
	lv.base = frameBase
	armed := SigreturnRegs(regs)
	armed.Rip, armed.Rsp = g.Addr, lv.uc
	if err := SetRegs(tid, &armed); err != nil {
		return nil, in.unplace(err)
	}
	// Blocked only now: had rtcr died before, the mask was untouched; from
	// here on the frame holds the thread's own mask.
	if err := SetSigMask(tid, ^uint64(0)); err != nil {
		return nil, in.disarm(err)
	}
	return in, nil
}

// placeFrame writes the thread's frame at base, returning the address of
// its ucontext and, when save is set, the bytes it replaced.
func (in *Injector) placeFrame(base uint64, save bool) (uc uint64, old []byte, err error) {
	frame, uc, err := buildFrame(base, in.saved, in.savedMask, in.live.xs)
	if err != nil {
		return 0, nil, fmt.Errorf("thread %d: %w", in.Tid, err)
	}
	if save {
		old = make([]byte, len(frame))
		if err := ReadMem(in.Tid, base, old); err != nil {
			return 0, nil, fmt.Errorf("thread %d: save stack below %#x: %w", in.Tid, base, err)
		}
	}
	if err := WriteMem(in.Tid, base, frame); err != nil {
		return 0, nil, fmt.Errorf("thread %d: write sigreturn frame at %#x: %w", in.Tid, base, err)
	}
	return uc, old, nil
}

// unplace puts back the bytes under the frame (once the thread no longer
// depends on it) and returns err.
func (in *Injector) unplace(err error) error {
	if lv := in.live; lv.restore != nil {
		if werr := WriteMem(in.Tid, lv.base, lv.restore); werr != nil && err == nil {
			err = fmt.Errorf("thread %d: put back memory at %#x: %w", in.Tid, lv.base, werr)
		}
		lv.restore = nil
	}
	return err
}

// MoveFrame writes the thread's frame at a new place; the thread switches
// to it with the next injected call, after which the old frame's bytes are
// put back. saveBytes says whether the new place must be put back later
// too. Moving back to where the frame is before the switch cancels it.
func (in *Injector) MoveFrame(base uint64, saveBytes bool) error {
	lv := in.live
	if lv == nil {
		return fmt.Errorf("thread %d: not a live injection", in.Tid)
	}
	if err := in.cancelMove(); err != nil {
		return err
	}
	if base == lv.base {
		return nil
	}
	uc, old, err := in.placeFrame(base, saveBytes)
	if err != nil {
		return err
	}
	lv.nextUC, lv.nextBase, lv.nextSaved = uc, base, old
	return nil
}

// cancelMove forgets a frame MoveFrame placed that the thread has not
// switched to, putting back the bytes under it.
func (in *Injector) cancelMove() error {
	lv := in.live
	if lv.nextUC == 0 {
		return nil
	}
	if lv.nextSaved != nil {
		if err := WriteMem(in.Tid, lv.nextBase, lv.nextSaved); err != nil {
			return fmt.Errorf("thread %d: put back memory at %#x: %w", in.Tid, lv.nextBase, err)
		}
	}
	lv.nextUC, lv.nextSaved = 0, nil
	return nil
}

// ptraceSyscall resumes tid to its next syscall stop.
func ptraceSyscall(tid int) error { return unix.PtraceSyscall(tid, 0) }

// liveSyscall runs one call through the armed thread (see live).
func (in *Injector) liveSyscall(nr uint64, a [6]uint64) (uint64, error) {
	lv := in.live
	entered := false
	for {
		if err := in.runTo(nr, ptraceSyscall, syscallStop); err != nil {
			return 0, err
		}
		regs, err := GetRegs(in.Tid)
		if err != nil {
			return 0, err
		}
		if !entered {
			lv.atEntry = true
			if regs.Orig_rax != unix.SYS_RT_SIGRETURN || regs.Rip != lv.gadgetEnd {
				return 0, fmt.Errorf("inject syscall %d into %d: stopped in call %d at %#x, want rt_sigreturn at %#x",
					nr, in.Tid, int64(regs.Orig_rax), regs.Rip, lv.gadgetEnd)
			}
			regs.Orig_rax = nr
			regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
			regs.Rip = lv.gadget
			if lv.nextUC != 0 {
				regs.Rsp = lv.nextUC
			}
			if err := SetRegs(in.Tid, &regs); err != nil {
				return 0, err
			}
			entered = true
			if lv.nextUC != 0 {
				if err := in.switchFrame(); err != nil {
					return 0, err
				}
			}
			continue
		}
		lv.atEntry = false
		if ret := int64(regs.Rax); ret < 0 && ret > -4096 {
			return 0, syscall.Errno(-ret)
		}
		return regs.Rax, nil
	}
}

// disarm takes the thread from the gadget back into a plain interrupt
// stop with the registers and mask it was frozen with, puts back the
// memory under its frame and sends again the signals held meanwhile. err,
// if not nil, is returned (wrapped with any error of disarming).
func (in *Injector) disarm(err error) error {
	if e := in.disarmStart(true); e != nil {
		return in.disarmFail(err, e)
	}
	return in.disarmEnd(err)
}

// disarmFail returns err wrapped with e, an error of disarming.
func (in *Injector) disarmFail(err, e error) error {
	if err != nil {
		return fmt.Errorf("%w (and putting thread %d back: %v)", err, in.Tid, e)
	}
	return e
}

// disarmStart is disarm up to setting the thread running into its
// interrupt stop (with cont; else disarmCont does); disarmEnd waits for
// that stop and does the rest. In between the thread runs its own signal
// path (or is about to: killed there, rtcr leaves it to run it).
func (in *Injector) disarmStart(cont bool) error {
	// Left at the entry of a call (an error there): skip the call and go
	// on to its exit, or the registers set below would be a call's
	// number and arguments.
	if lv := in.live; lv.atEntry {
		regs, e := GetRegs(in.Tid)
		if e != nil {
			return e
		}
		regs.Orig_rax = ^uint64(0)
		if lv.gadget != 0 { // back on the gadget, whatever failed
			regs.Rip, regs.Rsp = lv.gadget, lv.uc
		}
		if e := SetRegs(in.Tid, &regs); e != nil {
			return e
		}
		if e := in.runTo(^uint64(0), ptraceSyscall, syscallStop); e != nil {
			return e
		}
		lv.atEntry = false
	}
	// The mask first: killed after it, the thread still runs the gadget.
	if e := SetSigMask(in.Tid, in.savedMask); e != nil {
		return e
	}
	// Then the thread's own registers, with an interrupt pending: killed
	// from here on, the thread goes through its signal path (where the
	// kernel restarts an interrupted call) instead of straight back to
	// user space.
	if e := Interrupt(in.Tid); e != nil {
		return e
	}
	if e := SetRegs(in.Tid, &in.saved); e != nil {
		return e
	}
	if !cont {
		return nil
	}
	return in.disarmCont()
}

// disarmCont sets the thread running into its interrupt stop, once
// disarmStart set it up.
func (in *Injector) disarmCont() error {
	if e := unix.PtraceCont(in.Tid, 0); e != nil {
		return fmt.Errorf("resume %d into its interrupt stop: %w", in.Tid, e)
	}
	return nil
}

// disarmEnd finishes what disarmStart began (see disarm).
func (in *Injector) disarmEnd(err error) error {
	for {
		ws, e := Wait(in.Tid)
		if e != nil {
			return in.disarmFail(err, e)
		}
		if ws.Stopped() && event(ws) == abi.PTRACE_EVENT_STOP {
			break
		}
		if ws.Stopped() && event(ws) == 0 && ws.StopSignal() != syscallStop {
			in.held = append(in.held, ws.StopSignal())
		}
		if e := Interrupt(in.Tid); e != nil {
			return in.disarmFail(err, e)
		}
		if e := unix.PtraceCont(in.Tid, 0); e != nil {
			return in.disarmFail(err, fmt.Errorf("resume %d into its interrupt stop: %w", in.Tid, e))
		}
	}
	if e := in.cancelMove(); e != nil {
		return in.disarmFail(err, e)
	}
	if e := in.unplace(nil); e != nil {
		return in.disarmFail(err, e)
	}
	for _, sig := range in.held {
		if _, _, e := unix.Syscall(unix.SYS_TKILL, uintptr(in.Tid), uintptr(sig), 0); e != 0 {
			return in.disarmFail(err, fmt.Errorf("send %v again to %d: %w", sig, in.Tid, e))
		}
	}
	in.held = nil
	in.live = nil
	return err
}

// refuseShadowStack refuses threads with a user shadow stack: rt_sigreturn
// would look for a token rtcr cannot place there. It asks the kernel with
// PTRACE_ARCH_PRCTL(ARCH_SHSTK_STATUS), which stores the thread's features
// at an address of rtcr's own; a kernel without shadow stacks answers
// EINVAL.
func refuseShadowStack(tid int) error {
	if noShadowStacks.Load() {
		return nil
	}
	var features uint64
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, abi.PTRACE_ARCH_PRCTL, uintptr(tid), uintptr(unsafe.Pointer(&features)), abi.ARCH_SHSTK_STATUS, 0, 0)
	var err error
	if e != 0 {
		err = e
	}
	switch {
	case err == unix.EINVAL:
		// The kernel has no shadow stacks: no thread can have one.
		noShadowStacks.Store(true)
		return nil
	case err != nil:
		return fmt.Errorf("thread %d: shadow stack status: %w", tid, err)
	case features&abi.ARCH_SHSTK_SHSTK != 0:
		return fmt.Errorf("thread %d uses a shadow stack (features %#x): %w", tid, features, ErrUnsupported)
	}
	return nil
}

// noShadowStacks is set once the kernel answered that it has no shadow
// stacks (one PTRACE_ARCH_PRCTL a process, not one a thread).
var noShadowStacks atomic.Bool

// ErrUnsupported reports a thread state rtcr cannot inject into safely.
var ErrUnsupported = errors.New("not supported")
