package sig

// Pending signals: dumped with PTRACE_PEEKSIGINFO, re-queued on restore by
// rt_sigqueueinfo / rt_tgsigqueueinfo injected into the restored process.
//
// What survives the round trip: the kernel keeps the siginfo the caller of
// rt_[tg]sigqueueinfo passes, byte for byte (copy_siginfo_from_user, then
// copy_siginfo into the sigqueue entry), including si_code, si_pid, si_uid
// and si_value, as long as sender and target share the user and pid
// namespace (send_signal_locked only translates si_uid across user
// namespaces and clears si_pid for a sender in an ancestor pid namespace).
// PTRACE_PEEKSIGINFO copies the kernel siginfo out and zeroes the rest of
// the 128 bytes, so a re-dump gives the same 128 bytes: si_pid stays the
// original sender's pid, not the restored process's.
//
// What the kernel does not allow or does not keep:
//   - si_code >= 0 (SI_USER from kill, SI_KERNEL, a fault's code …) or
//     SI_TKILL can only be queued by the target itself: do_rt_sigqueueinfo
//     and do_rt_tgsigqueueinfo (kernel/signal.c) return EPERM unless
//     task_pid_vnr(current) == the target pid. task_pid_vnr(current) is the
//     calling thread's tid, so the process queue must be refilled from the
//     thread-group leader (tid == pid) and a thread's queue from that
//     thread itself. RestorePending checks this.
//   - A standard signal (1-31) already pending in a queue is not queued
//     again (legacy_queue): a second one is dropped, as it was when the
//     process received it.
//   - SIGKILL and SIGSTOP cannot be blocked (PTRACE_SETSIGMASK drops
//     them from the mask): once queued, the next call injected into any
//     thread that may take it dequeues it (checked: a queued SIGSTOP is
//     gone after one more injected getpid; it becomes a
//     signal-delivery-stop the injector swallows). RestorePending
//     therefore skips both: a dumped SIGSTOP is better sent with kill()
//     after the restored process is released. (The dump rarely sees one:
//     the dump's own injections into the leader dequeue it the same way.)
//   - Queuing SIGCONT discards pending stop signals (SIGSTOP, SIGTSTP,
//     SIGTTIN, SIGTTOU) and queuing a stop signal discards a pending
//     SIGCONT (prepare_signal), in both queues, as when the process got them.
//   - Every queued siginfo counts against RLIMIT_SIGPENDING (the
//     receiving process's limit, checked against the count of all pending
//     signals of its real uid, the original process's included if it
//     still lives): past it a real-time signal fails with EAGAIN and a
//     standard one is queued without siginfo. A signal pending without
//     siginfo (the same overflow at the time it was sent) shows in
//     /proc/PID/status SigPnd/ShdPnd but not in PTRACE_PEEKSIGINFO, so
//     DumpPending cannot see it.
//
// Every thread must have every signal blocked while its queue is refilled
// (the injector blocks all signals), otherwise a signal would be delivered
// at the end of the injected call; the final masks are set afterwards.

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// PTRACE_PEEKSIGINFO and its flag (include/uapi/linux/ptrace.h).
const (
	ptracePeekSiginfo       = 0x4209
	ptracePeekSiginfoShared = 1 << 0
)

// ptracePeekSiginfoArgs is struct ptrace_peeksiginfo_args
// (include/uapi/linux/ptrace.h).
type ptracePeekSiginfoArgs struct {
	Off   uint64 // index of the first siginfo to read
	Flags uint32
	Nr    int32 // how many to read at most
}

// peekBatch is how many siginfos one PTRACE_PEEKSIGINFO reads.
const peekBatch = 32

// siginfo field offsets (include/uapi/asm-generic/siginfo.h, x86_64).
const (
	siSignoOff = 0
	siCodeOff  = 8
)

// Signo returns si_signo of a raw siginfo (at least 12 bytes long, as
// every SigInfo of a valid image is).
func Signo(si image.SigInfo) int {
	return int(int32(binary.LittleEndian.Uint32(si[siSignoOff:])))
}

// Code returns si_code of a raw siginfo (at least 12 bytes long).
func Code(si image.SigInfo) int {
	return int(int32(binary.LittleEndian.Uint32(si[siCodeOff:])))
}

// DumpPending returns the signals pending for thread tid (shared false) or
// for its whole process (shared true), in queue order, as raw siginfos.
// tid must be in a ptrace stop of the calling tracer thread (run it inside
// ptrace.Run). Signals a thread has blocked are listed like the others.
func DumpPending(tid int, shared bool) ([]image.SigInfo, error) {
	which := "thread"
	args := ptracePeekSiginfoArgs{Nr: peekBatch}
	if shared {
		args.Flags = ptracePeekSiginfoShared
		which = "process"
	}
	var buf [peekBatch * image.SigInfoSize]byte
	var out []image.SigInfo
	for {
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, ptracePeekSiginfo, uintptr(tid),
			uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e != 0 {
			return nil, fmt.Errorf("read pending signals of %s %d: %w", which, tid, e)
		}
		if n == 0 {
			return out, nil
		}
		if n > peekBatch {
			return nil, fmt.Errorf("read pending signals of %s %d: kernel returned %d siginfos for %d", which, tid, n, peekBatch)
		}
		for i := 0; i < int(n); i++ {
			out = append(out, image.SigInfo(append([]byte(nil), buf[i*image.SigInfoSize:(i+1)*image.SigInfoSize]...)))
		}
		if len(out) > image.MaxPending {
			return nil, fmt.Errorf("%s %d has more than %d pending signals", which, tid, image.MaxPending)
		}
		args.Off += uint64(n)
	}
}

// RestorePending queues infos again, in order, from inside the restored
// process r: the process queue when shared is set (rt_sigqueueinfo), else
// the own queue of thread tid (rt_tgsigqueueinfo). in must be the injector
// of the thread that may queue them (see the top of this file): the
// thread-group leader (in.Tid == r.Pid) when shared, thread tid itself
// otherwise. Each signal goes with the signal number its siginfo names;
// SIGKILL and SIGSTOP are skipped. The thread(s) must have every signal
// blocked, as injected threads do.
func RestorePending(in *ptrace.Injector, r *ptrace.Remote, tid int, infos []image.SigInfo, shared bool) error {
	if len(infos) == 0 {
		return nil
	}
	which := fmt.Sprintf("thread %d", tid)
	if shared {
		which = fmt.Sprintf("process %d", r.Pid)
		if in.Tid != r.Pid {
			return fmt.Errorf("restore pending signals of %s: must be injected into the leader, not thread %d", which, in.Tid)
		}
	} else if in.Tid != tid {
		return fmt.Errorf("restore pending signals of %s: must be injected into that thread, not %d", which, in.Tid)
	}
	for i, si := range infos {
		if len(si) != image.SigInfoSize {
			return fmt.Errorf("restore pending signals of %s: siginfo %d is %d bytes, want %d", which, i, len(si), image.SigInfoSize)
		}
		s := Signo(si)
		if s == int(unix.SIGKILL) || s == int(unix.SIGSTOP) {
			continue
		}
		if s < 1 || s > abi.MaxSignal {
			return fmt.Errorf("restore pending signals of %s: siginfo %d: signal %d out of range", which, i, s)
		}
		addr, err := r.Put(ptrace.ArgOff, si)
		if err != nil {
			return err
		}
		if shared {
			_, err = in.Syscall(unix.SYS_RT_SIGQUEUEINFO, uint64(r.NsPid), uint64(s), addr)
		} else {
			_, err = in.Syscall(unix.SYS_RT_TGSIGQUEUEINFO, uint64(r.NsPid), uint64(in.NsTid), uint64(s), addr)
		}
		if err != nil {
			return fmt.Errorf("restore pending signals of %s: queue signal %d (si_code %d): %w", which, s, Code(si), err)
		}
	}
	return nil
}
