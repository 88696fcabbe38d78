package ptrace

import (
	"fmt"
	"syscall"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// Scratch layout of a live process's scratch area, above DataOff: the
// gadget rtcr writes when the process has none, and the frames of the
// leader and of the one other thread being injected into at a time.
const (
	gadgetOff      = 0x7f00
	leaderFrameOff = 0x8000
	threadFrameOff = 0xc000
)

// stackFrameRoom is what a frame needs below the red zone on the stack.
const stackFrameRoom = maxFrameSize

// OpenLive prepares injection into the stopped leader pid of a live
// process so that rtcr can be killed at any moment without harm (see
// live). The scratch area is mapped with a call made safe by a frame on
// the leader's own stack, below its red zone, where the kernel would put
// a signal frame; the frame then moves into the scratch area.
//
// Two cases leave a window of one system call each (the mmap here and the
// munmap in CloseRemote), in which a killed rtcr leaves the leader at the
// vdso's syscall instruction: a leader whose stack pointer is not in the
// [stack] mapping (its stack might be heap memory in use), and a process
// without a sigreturn gadget in its code (rtcr then writes one into the
// scratch area). WindowCalls reports them.
func OpenLive(pid int, vdsoSyscall uint64) (*Remote, error) {
	return OpenLiveThreads(pid, vdsoSyscall, 0)
}

// OpenLiveThreads is OpenLive with a scratch area that also holds a slot
// for each of up to threads other threads, to inject into them all at once
// (RunThreads; at most MaxThreadSlots).
func OpenLiveThreads(pid int, vdsoSyscall uint64, threads int) (*Remote, error) {
	threads = min(max(threads, 0), MaxThreadSlots)
	size := uint64(ScratchSize + threads*threadSlotSize)
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	g, haveGadget, err := findSigreturnGadget(pid, maps)
	if err != nil {
		return nil, fmt.Errorf("look for a sigreturn gadget in %d: %w", pid, err)
	}
	regs, err := GetRegs(pid)
	if err != nil {
		return nil, err
	}
	// Before the thread first runs elsewhere (the kernel would then forget
	// the critical section): see rseqAbort.
	if err := rseqAbort(pid, &regs); err != nil {
		return nil, err
	}
	stackBase, onStack := stackFrameBase(maps, regs.Rsp)
	r := &Remote{Pid: pid, NsPid: pid, ScratchSize: int(size), gadget: g, slots: threads}
	if haveGadget && onStack {
		in, err := NewLiveInjector(pid, g, stackBase, true)
		if err != nil {
			return nil, err
		}
		// Executable, for batches; a process that refuses writable
		// code (PR_SET_MDWE, an LSM) gets a plain one.
		r.exec = true
		addr, err := in.Syscall(unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err == unix.EACCES || err == unix.EPERM {
			r.exec = false
			addr, err = in.Syscall(unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		}
		if err == unix.ENOMEM && r.slots > 0 {
			// No room for the thread slots (RLIMIT_AS): the plain
			// area, the threads one after the other.
			prot := uint64(unix.PROT_READ | unix.PROT_WRITE)
			if r.exec {
				prot |= unix.PROT_EXEC
			}
			r.slots, r.ScratchSize = 0, ScratchSize
			addr, err = in.Syscall(unix.SYS_MMAP, 0, ScratchSize, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		}
		if err != nil {
			return nil, in.disarm(fmt.Errorf("map scratch area in %d: %w", pid, err))
		}
		r.Injector, r.Scratch, r.stackFrame = in, addr, stackBase
		if err := in.MoveFrame(addr+leaderFrameOff, false); err != nil {
			return nil, r.closeLive(err)
		}
		return r, nil
	}
	// Executable, for the gadget written into it and for batches.
	prot := uint64(unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC)
	addr, err := windowSyscall(pid, vdsoSyscall, regs, unix.SYS_MMAP, 0, size, prot,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	r.WindowCalls, r.exec = 1, true
	if (err == unix.EACCES || err == unix.EPERM) && haveGadget {
		r.WindowCalls, r.exec = 2, false
		addr, err = windowSyscall(pid, vdsoSyscall, regs, unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	}
	if err == unix.ENOMEM && r.slots > 0 {
		// No room for the thread slots (RLIMIT_AS): the plain area,
		// the threads one after the other, as above.
		prot := uint64(unix.PROT_READ | unix.PROT_WRITE)
		if r.exec {
			prot |= unix.PROT_EXEC
		}
		r.WindowCalls++
		r.slots, r.ScratchSize = 0, ScratchSize
		addr, err = windowSyscall(pid, vdsoSyscall, regs, unix.SYS_MMAP, 0, ScratchSize, prot,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	}
	if err != nil {
		return nil, fmt.Errorf("map scratch area in %d: %w", pid, err)
	}
	r.Scratch, r.vdsoSyscall = addr, vdsoSyscall
	if !haveGadget {
		code := sigreturnCode[0]
		r.gadget = Gadget{Addr: addr + gadgetOff, End: addr + gadgetOff + uint64(len(code))}
		if err := WriteMem(pid, r.gadget.Addr, code); err != nil {
			return nil, r.unmapUnsafe(regs, fmt.Errorf("write sigreturn gadget into %d: %w", pid, err))
		}
	}
	in, err := NewLiveInjector(pid, r.gadget, addr+leaderFrameOff, false)
	if err != nil {
		return nil, r.unmapUnsafe(regs, err)
	}
	r.Injector = in
	return r, nil
}

// ThreadInjector prepares injection into another stopped thread of the
// process: a live injector with its frame in the scratch area for a live
// process, a plain one for a stub. Only one at a time may be open.
func (r *Remote) ThreadInjector(tid int) (*Injector, error) {
	if r.Injector == nil || r.Injector.live == nil {
		return NewInjector(tid, r.SyscallAddr)
	}
	return NewLiveInjector(tid, r.gadget, r.Scratch+threadFrameOff, false)
}

// closeLive unmaps the scratch area of a live process and puts the leader
// back as it was frozen; err, if not nil, is returned with any error of
// doing so.
func (r *Remote) closeLive(err error) error {
	in := r.Injector
	saved := in.saved
	if r.stackFrame != 0 {
		// Safe all the way: the frame goes back to the stack first.
		if e := in.MoveFrame(r.stackFrame, true); e != nil {
			return in.disarm(joinErr(err, e))
		}
		if _, e := in.Syscall(unix.SYS_MUNMAP, r.Scratch, uint64(r.ScratchSize)); e != nil {
			err = joinErr(err, fmt.Errorf("unmap scratch area of %d: %w", r.Pid, e))
		}
		return in.disarm(err)
	}
	if e := in.disarm(nil); e != nil {
		return joinErr(err, e)
	}
	r.WindowCalls++
	return r.unmapUnsafe(saved, err)
}

// unmapUnsafe unmaps the scratch area with a plain injected call.
func (r *Remote) unmapUnsafe(regs unix.PtraceRegs, err error) error {
	if _, e := windowSyscall(r.Pid, r.vdsoSyscall, regs, unix.SYS_MUNMAP, r.Scratch, uint64(r.ScratchSize)); e != nil {
		return joinErr(err, fmt.Errorf("unmap scratch area of %d: %w", r.Pid, e))
	}
	return err
}

// windowSyscall runs one call in thread tid (in a plain interrupt stop
// with registers regs) at the syscall instruction sys, then puts the
// thread back into its interrupt stop with regs. Killed meanwhile, rtcr
// leaves the thread at sys+2 with the call's registers: the window the
// live injector exists to avoid, used only where it cannot be (OpenLive).
func windowSyscall(tid int, sys uint64, regs unix.PtraceRegs, nr uint64, args ...uint64) (uint64, error) {
	var a [6]uint64
	copy(a[:], args)
	mask, err := GetSigMask(tid)
	if err != nil {
		return 0, err
	}
	r := regs
	r.Rip, r.Rax, r.Orig_rax = sys, nr, ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	in := &Injector{Tid: tid, saved: regs, savedMask: mask, live: &live{}}
	if err := SetRegs(tid, &r); err != nil {
		return 0, err
	}
	// Signals blocked for the call, after the registers (killed between
	// the two, the thread must not keep its own registers with every
	// signal blocked); disarm puts the mask back before the registers.
	if err := SetSigMask(tid, ^uint64(0)); err != nil {
		return 0, in.disarm(err)
	}
	var result uint64
	var callErr error
	for i := range 2 { // the syscall-entry stop, then the exit stop
		if err := in.runTo(nr, ptraceSyscall, syscallStop); err != nil {
			return 0, in.disarm(err)
		}
		in.live.atEntry = i == 0
	}
	out, err := GetRegs(tid)
	if err != nil {
		return 0, in.disarm(err)
	}
	result = out.Rax
	if ret := int64(out.Rax); ret < 0 && ret > -4096 {
		callErr = syscall.Errno(-ret)
	}
	// Back into the interrupt stop with the thread's registers and mask.
	if err := in.disarm(nil); err != nil {
		return 0, err
	}
	return result, callErr
}

// stackFrameBase returns where a frame goes below the red zone of a
// thread whose stack pointer is sp, and whether that place is in the
// process's [stack] mapping, with room.
func stackFrameBase(maps []procfs.Mapping, sp uint64) (uint64, bool) {
	base := (sp - 128 - stackFrameRoom) &^ 63
	for _, m := range maps {
		if m.Path == "[stack]" && sp > m.Start && sp <= m.End && base >= m.Start {
			return base, true
		}
	}
	return 0, false
}

// joinErr returns err, or e when err is nil, or both.
func joinErr(err, e error) error {
	if err == nil {
		return e
	}
	return fmt.Errorf("%w (and: %v)", err, e)
}
