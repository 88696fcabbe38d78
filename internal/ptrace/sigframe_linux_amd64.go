package ptrace

import (
	"encoding/binary"
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

// A sigreturn frame is what makes injection into a live process safe
// against rtcr dying: while rtcr injects calls, the thread's registers
// always point at a `mov $15, %eax; syscall` (rt_sigreturn) with rsp at a
// frame that holds the thread's own registers, signal mask and FPU state.
// Should the tracer vanish, the thread runs rt_sigreturn and continues as
// if nothing had happened.
//
// Layout (arch/x86/include/asm/sigframe.h, uapi/asm/sigcontext.h): rsp
// points at struct ucontext; rt_sigreturn reads the frame at rsp-8.
const (
	ucFlagsOff    = 0   // unsigned long uc_flags
	ucStackOff    = 16  // stack_t uc_stack (ss_sp, ss_flags, ss_size)
	ucMcontextOff = 40  // struct sigcontext_64 (256 bytes)
	ucSigmaskOff  = 296 // sigset_t (8 bytes)
	ucSize        = 304
	siginfoSize   = 128

	// uc_flags the kernel sets for 64-bit frames.
	ucFPXState        = 0x1
	ucSigcontextSS    = 0x2
	ucStrictRestoreSS = 0x4

	// fpxSwBytesOff is where struct _fpx_sw_bytes sits in the xsave area
	// (the fxsave area's sw_reserved bytes).
	fpxSwBytesOff    = 464
	fpXStateMagic1   = 0x46505853
	fpXStateMagic2   = unix.FP_XSTATE_MAGIC2
	frameHeadroom    = 64 // below uc: the return-address slot, kept aligned
	maxFrameSize     = 16 << 10
	invalidStackMode = 3 // SS_ONSTACK|SS_DISABLE: rejected, so rt_sigreturn leaves the altstack alone
)

// SigreturnRegs returns the registers a thread stopped in regs continues
// with when it resumes through rt_sigreturn: an interrupted system call is
// set up to be made again (the kernel does this itself when it resumes a
// thread from a ptrace stop; after rt_sigreturn it does not). A call
// interrupted with -ERESTART_RESTARTBLOCK (nanosleep, poll, futex waits
// with a timeout …) is made again with its original arguments, not through
// restart_syscall: rt_sigreturn resets the thread's restart block, so
// restart_syscall would fail with EINTR. A relative timeout then starts
// over. A thread already in restart_syscall (stopped and resumed before)
// shows no original call to make again: it gets EINTR, as after a signal
// handler. orig_rax becomes -1.
func SigreturnRegs(regs unix.PtraceRegs) unix.PtraceRegs {
	nr := int64(regs.Orig_rax)
	regs.Orig_rax = ^uint64(0)
	if nr < 0 {
		return regs
	}
	switch -int64(regs.Rax) {
	case abi.ERESTARTSYS, abi.ERESTARTNOINTR, abi.ERESTARTNOHAND, abi.ERESTART_RESTARTBLOCK:
		regs.Rax = uint64(nr)
		regs.Rip -= 2
	}
	return regs
}

// buildFrame lays out, for a frame area starting at base, an rt_sigreturn
// frame that restores regs (see SigreturnRegs), mask and the xsave area
// xs. It returns the bytes to write at base and the address rsp must hold.
func buildFrame(base uint64, regs unix.PtraceRegs, mask uint64, xs []byte) ([]byte, uint64, error) {
	uc := (base + frameHeadroom + 15) &^ 15
	fp := (uc + ucSize + siginfoSize + 63) &^ 63
	xsize, err := xstateSize(xs)
	if err != nil {
		return nil, 0, err
	}
	end := fp + uint64(xsize) + 4
	if end-base > maxFrameSize {
		return nil, 0, fmt.Errorf("sigreturn frame of %d bytes (xsave area %d) is larger than %d", end-base, xsize, maxFrameSize)
	}
	buf := make([]byte, end-base)
	le := binary.LittleEndian
	u := buf[uc-base:]
	le.PutUint64(u[ucFlagsOff:], ucFPXState|ucSigcontextSS|ucStrictRestoreSS)
	le.PutUint32(u[ucStackOff+8:], invalidStackMode)
	r := SigreturnRegs(regs)
	mc := u[ucMcontextOff:]
	for i, v := range []uint64{r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
		r.Rdi, r.Rsi, r.Rbp, r.Rbx, r.Rdx, r.Rax, r.Rcx, r.Rsp, r.Rip, r.Eflags} {
		le.PutUint64(mc[8*i:], v)
	}
	le.PutUint16(mc[144:], uint16(r.Cs))
	le.PutUint16(mc[146:], uint16(r.Gs))
	le.PutUint16(mc[148:], uint16(r.Fs))
	le.PutUint16(mc[150:], uint16(r.Ss))
	le.PutUint64(mc[184:], fp) // fpstate
	le.PutUint64(u[ucSigmaskOff:], mask)
	copy(buf[fp-base:], xs[:xsize])
	putSwBytes(buf[fp-base : fp-base+uint64(xsize)])
	le.PutUint32(buf[fp-base+uint64(xsize):], fpXStateMagic2)
	return buf, uc, nil
}

// maxSigXState bounds the xsave area a frame carries (AMX tile data
// included).
const maxSigXState = 12 << 10

// xstateSize returns how much of the xsave area NT_X86_XSTATE gave a
// signal frame carries: up to the end of the last state component in use
// (its header's XSTATE_BV). NT_X86_XSTATE gives the size of every feature
// the CPU has, dynamically enabled ones (AMX) included, which can be more
// than the thread's own signal frames hold: the kernel would then take
// only the legacy x87/SSE state from the frame.
func xstateSize(xs []byte) (int, error) {
	if len(xs) < 512+64 {
		return 0, fmt.Errorf("xsave area of %d bytes is too short", len(xs))
	}
	size := xsaveEnd(binary.LittleEndian.Uint64(xs[512:]) | 3)
	if size > len(xs) || size > maxSigXState {
		return 0, fmt.Errorf("xsave area: the state in use ends at %d bytes, have %d (limit %d): %w", size, len(xs), maxSigXState, ErrUnsupported)
	}
	return size, nil
}

// putSwBytes fills the fxsave area's sw_reserved bytes of a frame's copy
// of the xsave area as the kernel does for a signal frame (struct
// _fpx_sw_bytes): magic, sizes and the features the area holds.
func putSwBytes(xs []byte) {
	le := binary.LittleEndian
	sw := xs[fpxSwBytesOff:512]
	clear(sw)
	xstateBV := le.Uint64(xs[512:]) // the xsave header's xfeatures
	le.PutUint32(sw[0:], fpXStateMagic1)
	le.PutUint32(sw[4:], uint32(len(xs))+4) // extended_size
	le.PutUint64(sw[8:], xstateBV|3)        // x87 and SSE always
	le.PutUint32(sw[16:], uint32(len(xs)))  // xstate_size
}
