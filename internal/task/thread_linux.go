package task

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Dump collects the state of thread tid of the stopped process r. The
// calls that only the thread itself can make (PR_GET_TID_ADDRESS,
// sigaltstack) are injected into it, as one batch; its registers and mask
// are the ones it had before any injection.
func Dump(r *ptrace.Remote, tid int) (th image.Thread, err error) {
	in := r.Injector
	if tid != r.Tid {
		if in, err = r.ThreadInjector(tid); err != nil {
			return image.Thread{Tid: tid}, err
		}
		defer func() {
			if rerr := in.Restore(); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	b := r.NewBatch()
	done, err := DumpBatch(r, in, b, tid)
	if err != nil {
		return image.Thread{Tid: tid}, err
	}
	if err := r.RunBatch(in, b); err != nil {
		return image.Thread{Tid: tid}, err
	}
	return done()
}

// DumpThreads is Dump for each of tids, other threads of r's process than
// its own, injected into side by side as far as r allows
// (ptrace.Remote.RunThreads); the states come in the order of tids.
func DumpThreads(r *ptrace.Remote, tids []int) ([]image.Thread, error) {
	ths := make([]image.Thread, len(tids))
	i := 0
	err := r.RunThreads(tids, func(in *ptrace.Injector, b *ptrace.Batch) (func() error, error) {
		th := &ths[i]
		i++
		done, err := DumpBatch(r, in, b, in.Tid)
		if err != nil {
			return nil, err
		}
		return func() (err error) {
			*th, err = done()
			return err
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return ths, nil
}

// DumpBatch is Dump for thread tid of r, injected into through in, with
// its calls queued in b (to run in that thread); done returns the thread's
// state once b ran.
func DumpBatch(r *ptrace.Remote, in *ptrace.Injector, b *ptrace.Batch, tid int) (done func() (image.Thread, error), err error) {
	th := image.Thread{Tid: tid}
	th.Regs = in.Saved()
	th.SigMask = in.SavedMask()
	th.Syscall = AdjustRestart(&th.Regs)

	// A live injector read the xsave area at the same stop already.
	if th.XState = in.SavedXState(); th.XState == nil {
		if th.XState, err = ptrace.GetXState(tid); err != nil {
			return nil, err
		}
	}
	rs, err := ptrace.GetRseq(tid)
	if err != nil {
		return nil, err
	}
	if rs.RseqAbiPointer != 0 {
		th.Rseq = &image.Rseq{Ptr: rs.RseqAbiPointer, Len: rs.RseqAbiSize, Sig: rs.Signature}
	}
	// PR_GET_TID_ADDRESS stores the pointer in the batch's outputs.
	tidAddr, tidOff := b.Out(8)
	tidCall := b.Add(unix.SYS_PRCTL, abi.PR_GET_TID_ADDRESS, tidAddr)
	var ss abi.StackT
	ssAddr, ssOff := b.Out(len(ptrace.Bytes(&ss)))
	ssCall := b.Add(unix.SYS_SIGALTSTACK, 0, ssAddr)
	// The name as /proc/PID/task/TID/comm shows it (both are the
	// thread's comm), without three calls and a path walk per thread.
	nameAddr, nameOff := b.Out(16)
	nameCall := b.Add(unix.SYS_PRCTL, unix.PR_GET_NAME, nameAddr)
	return func() (image.Thread, error) {
		if _, err := b.Result(nameCall); err != nil {
			return th, fmt.Errorf("read the name of %d: %w", tid, err)
		}
		name := b.Bytes(nameOff, 16)
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		th.Name = string(name)
		if _, err := b.Result(tidCall); err != nil {
			return th, fmt.Errorf("read clear-tid address of %d: %w", tid, err)
		}
		th.TidAddress = binary.LittleEndian.Uint64(b.Bytes(tidOff, 8))
		if _, err := b.Result(ssCall); err != nil {
			return th, fmt.Errorf("read sigaltstack of %d: %w", tid, err)
		}
		copy(ptrace.Bytes(&ss), b.Bytes(ssOff, len(ptrace.Bytes(&ss))))
		// The call ran on rtcr's frame, not the thread's stack: whether
		// the thread is on its alternate stack is decided here, as the
		// kernel does (on_sig_stack), from its own stack pointer.
		ss.Flags &^= abi.SS_ONSTACK
		if ss.Flags&abi.SS_DISABLE == 0 && onStack(in.Saved().Rsp, ss) {
			ss.Flags |= abi.SS_ONSTACK
		}
		th.AltStack = image.SigAltStack{Sp: ss.Sp, Flags: ss.Flags, Size: ss.Size}
		return th, nil
	}, nil
}

// onStack reports whether sp is on the alternate signal stack ss.
func onStack(sp uint64, ss abi.StackT) bool {
	return sp > ss.Sp && sp-ss.Sp <= ss.Size
}

// Restore gives the stub's thread in the kernel state of th that only the
// thread itself can set: rseq registration, clear-tid address, alternate
// signal stack and name.
func Restore(in *ptrace.Injector, r *ptrace.Remote, th *image.Thread) error {
	tid := in.Tid
	if th.Rseq != nil {
		if _, err := in.Syscall(abi.SYS_RSEQ, th.Rseq.Ptr, uint64(th.Rseq.Len), 0, uint64(th.Rseq.Sig)); err != nil {
			return fmt.Errorf("restore thread %d: register rseq at %#x: %w", tid, th.Rseq.Ptr, err)
		}
	}
	if _, err := in.Syscall(unix.SYS_SET_TID_ADDRESS, th.TidAddress); err != nil {
		return fmt.Errorf("restore thread %d: set_tid_address: %w", tid, err)
	}
	if th.AltStack.Flags&abi.SS_DISABLE == 0 {
		ss := abi.StackT{Sp: th.AltStack.Sp, Flags: th.AltStack.Flags &^ abi.SS_ONSTACK, Size: th.AltStack.Size}
		addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&ss))
		if err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_SIGALTSTACK, addr, 0); err != nil {
			return fmt.Errorf("restore thread %d: sigaltstack: %w", tid, err)
		}
	}
	if th.Name != "" {
		name, err := r.PutString(ptrace.ArgOff, th.Name)
		if err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_NAME, name); err != nil {
			return fmt.Errorf("restore thread %d: set name: %w", tid, err)
		}
	}
	return nil
}

// SetCPU sets the registers, xsave area and signal mask of thread tid. It
// is the last step before the thread is released: after it, no call can be
// injected into the thread.
func SetCPU(tid int, th *image.Thread) error {
	if err := ptrace.SetXState(tid, th.XState); err != nil {
		return fmt.Errorf("set cpu state of %d: %w", tid, err)
	}
	regs := th.Regs
	if err := ptrace.SetRegs(tid, &regs); err != nil {
		return fmt.Errorf("set cpu state of %d: %w", tid, err)
	}
	if err := ptrace.SetSigMask(tid, th.SigMask); err != nil {
		return fmt.Errorf("set cpu state of %d: %w", tid, err)
	}
	return nil
}
