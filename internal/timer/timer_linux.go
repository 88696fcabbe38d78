// Package timer holds the interval timers and POSIX timers of a process:
// dump and restore side by side.
//
// The interval timers are the three setitimer(2) timers ITIMER_REAL,
// ITIMER_VIRTUAL and ITIMER_PROF; the POSIX timers are those of
// timer_create(2), listed in /proc/PID/timers. Both are read and set with
// system calls injected into the process, since only the process itself can
// call getitimer and timer_gettime on its timers.
//
// Times are saved as what is left until the next expiry and restored
// relative to the moment of the restore: the time the process spent
// checkpointed does not count. A timer armed with TIMER_ABSTIME comes back
// as a relative one. The kernel adds one tick (1 to 10 ms, CONFIG_HZ) to
// the value of ITIMER_VIRTUAL and ITIMER_PROF when they are set, so these
// fire up to one tick of CPU time later than they would have. A POSIX timer
// on CLOCK_THREAD_CPUTIME_ID (saved as clock -2, "the calling thread")
// measures the thread Restore runs in, not necessarily its creator.
package timer

import (
	"fmt"
	"os"
	"strconv"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// numItimers is the number of setitimer timers: ITIMER_REAL (0),
// ITIMER_VIRTUAL (1) and ITIMER_PROF (2).
const numItimers = 3

// Scratch layout of the injected calls.
const (
	sigeventOff = ptrace.ArgOff       // struct sigevent (64 bytes)
	idOff       = ptrace.ArgOff + 64  // a timer id (int, 4 bytes)
	timeOff     = ptrace.ArgOff + 128 // struct itimerval or itimerspec (32 bytes)
)

// sigevent is the x86_64 struct sigevent: for SIGEV_THREAD_ID the target
// tid is the first int of the union at offset 16.
type sigevent struct {
	Value  uint64
	Signo  int32
	Notify int32
	Tid    int32
	_      [44]byte
}

// Dump reads the interval timers (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF,
// in that order) and the POSIX timers, sorted by id, of the process r. A
// SIGEV_THREAD_ID timer whose thread has exited is saved as SIGEV_NONE.
func Dump(r *ptrace.Remote) ([]image.Itimer, []image.PosixTimer, error) {
	b := r.NewBatch()
	done, err := DumpBatch(r, b)
	if err != nil {
		return nil, nil, err
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return nil, nil, err
	}
	return done()
}

// DumpBatch is Dump with its calls queued in b; done returns the timers
// once b ran.
func DumpBatch(r *ptrace.Remote, b *ptrace.Batch) (done func() ([]image.Itimer, []image.PosixTimer, error), err error) {
	type read struct{ call, off int }
	var its [numItimers]read
	for which := range numItimers {
		var v unix.Itimerval
		addr, off := b.Out(len(ptrace.Bytes(&v)))
		its[which] = read{b.Add(unix.SYS_GETITIMER, uint64(which), addr), off}
	}
	pts, err := ReadTimers(r.Pid)
	if err != nil {
		return nil, fmt.Errorf("list POSIX timers of %d: %w", r.Pid, err)
	}
	ptReads := make([]read, len(pts))
	for i := range pts {
		var v unix.ItimerSpec
		addr, off := b.Out(len(ptrace.Bytes(&v)))
		ptReads[i] = read{b.Add(unix.SYS_TIMER_GETTIME, uint64(pts[i].ID), addr), off}
	}
	return func() ([]image.Itimer, []image.PosixTimer, error) {
		out := make([]image.Itimer, 0, numItimers)
		for which, rd := range its {
			if _, err := b.Result(rd.call); err != nil {
				return nil, nil, fmt.Errorf("read itimer %d of %d: getitimer: %w", which, r.Pid, err)
			}
			var v unix.Itimerval
			copy(ptrace.Bytes(&v), b.Bytes(rd.off, len(ptrace.Bytes(&v))))
			out = append(out, image.Itimer{IntervalNs: timevalNs(v.Interval), ValueNs: timevalNs(v.Value)})
		}
		for i, rd := range ptReads {
			if _, err := b.Result(rd.call); err != nil {
				return nil, nil, fmt.Errorf("read POSIX timer %d of %d: timer_gettime: %w", pts[i].ID, r.Pid, err)
			}
			var v unix.ItimerSpec
			copy(ptrace.Bytes(&v), b.Bytes(rd.off, len(ptrace.Bytes(&v))))
			pts[i].IntervalNs, pts[i].ValueNs = v.Interval.Nano(), v.Value.Nano()
			if pts[i].SigevNotify&SigevThreadID != 0 && !threadExists(r.Pid, pts[i].NotifyTid) {
				// The thread has exited: the kernel drops the timer's
				// signals, which SIGEV_NONE restores (the tid could not).
				pts[i].SigevNotify, pts[i].NotifyTid = SigevNone, 0
			}
		}
		return out, pts, nil
	}, nil
}

// Restore creates the POSIX timers pts in the process r, with the same
// ids, and arms them and the interval timers its (indexed by ITIMER_*)
// with their saved times. Timers with SIGEV_THREAD_ID notify their
// NotifyTid, which must be a thread of r by then: call Restore after the
// threads are restored. r should hold no POSIX timer yet.
func Restore(r *ptrace.Remote, its []image.Itimer, pts []image.PosixTimer) error {
	return restore(r, its, pts, false)
}

// restore is Restore; linear forces the fallback for kernels without
// PR_TIMER_CREATE_RESTORE_IDS.
func restore(r *ptrace.Remote, its []image.Itimer, pts []image.PosixTimer, linear bool) error {
	if len(its) > numItimers {
		return fmt.Errorf("restore itimers of %d: %d of them, want at most %d", r.Pid, len(its), numItimers)
	}
	if err := restorePosix(r, pts, linear); err != nil {
		return err
	}
	for which, it := range its {
		if it.IntervalNs < 0 || it.ValueNs < 0 {
			return fmt.Errorf("restore itimer %d of %d: negative time %+v", which, r.Pid, it)
		}
		value := it.ValueNs
		if value == 0 && it.IntervalNs != 0 {
			value = 1 // armed but due now: see armPosix
		}
		v := unix.Itimerval{Interval: nsTimeval(it.IntervalNs), Value: nsTimeval(value)}
		addr, err := r.Put(timeOff, ptrace.Bytes(&v))
		if err != nil {
			return fmt.Errorf("restore itimer %d of %d: %w", which, r.Pid, err)
		}
		if _, err := r.Syscall(unix.SYS_SETITIMER, uint64(which), addr, 0); err != nil {
			return fmt.Errorf("restore itimer %d of %d: setitimer: %w", which, r.Pid, err)
		}
	}
	return nil
}

// createPosix creates timer pt with an injected timer_create and returns
// the id the kernel gave it. Only when PR_TIMER_CREATE_RESTORE_IDS is on
// does the kernel read the wanted id (pt.ID) from the id argument.
func createPosix(r *ptrace.Remote, pt image.PosixTimer) (int32, error) {
	ev := sigevent{Value: pt.SigevValue, Signo: pt.Signo, Notify: pt.SigevNotify}
	if pt.SigevNotify&SigevThreadID != 0 {
		if pt.NotifyTid <= 0 {
			return 0, fmt.Errorf("restore POSIX timer %d of %d: SIGEV_THREAD_ID without a thread", pt.ID, r.Pid)
		}
		ev.Tid = int32(pt.NotifyTid)
	}
	evAddr, err := r.Put(sigeventOff, ptrace.Bytes(&ev))
	if err != nil {
		return 0, fmt.Errorf("restore POSIX timer %d of %d: %w", pt.ID, r.Pid, err)
	}
	id := pt.ID
	idAddr, err := r.Put(idOff, ptrace.Bytes(&id))
	if err != nil {
		return 0, fmt.Errorf("restore POSIX timer %d of %d: %w", pt.ID, r.Pid, err)
	}
	if _, err := r.Syscall(unix.SYS_TIMER_CREATE, uint64(int64(pt.Clock)), evAddr, idAddr); err != nil {
		return 0, fmt.Errorf("restore POSIX timer %d of %d: timer_create (clock %d, notify %d, signal %d): %w",
			pt.ID, r.Pid, pt.Clock, pt.SigevNotify, pt.Signo, err)
	}
	if err := r.Get(idOff, ptrace.Bytes(&id)); err != nil {
		return 0, fmt.Errorf("restore POSIX timer %d of %d: %w", pt.ID, r.Pid, err)
	}
	return id, nil
}

// armPosix sets the times of the created timer pt with an injected
// timer_settime. A disarmed timer (ValueNs 0) stays disarmed. The kernel
// never reports 0 left for an armed timer (an interval timer with a signal
// pending reads as at least 1 ns), but should a saved timer have an
// interval and no value left anyway, it gets 1 ns so that it fires.
func armPosix(r *ptrace.Remote, pt image.PosixTimer) error {
	if pt.IntervalNs < 0 || pt.ValueNs < 0 {
		return fmt.Errorf("restore POSIX timer %d of %d: negative time (interval %d ns, value %d ns)",
			pt.ID, r.Pid, pt.IntervalNs, pt.ValueNs)
	}
	value := pt.ValueNs
	if value == 0 {
		if pt.IntervalNs == 0 {
			return nil
		}
		value = 1
	}
	v := unix.ItimerSpec{Interval: unix.NsecToTimespec(pt.IntervalNs), Value: unix.NsecToTimespec(value)}
	addr, err := r.Put(timeOff, ptrace.Bytes(&v))
	if err != nil {
		return fmt.Errorf("restore POSIX timer %d of %d: %w", pt.ID, r.Pid, err)
	}
	if _, err := r.Syscall(unix.SYS_TIMER_SETTIME, uint64(pt.ID), 0, addr, 0); err != nil {
		return fmt.Errorf("restore POSIX timer %d of %d: timer_settime: %w", pt.ID, r.Pid, err)
	}
	return nil
}

// threadExists reports whether tid is a live thread of process pid. A tid
// reused by a new thread of the process passes: /proc cannot tell it apart.
func threadExists(pid, tid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid))
	return err == nil
}

// timevalNs converts a struct timeval to nanoseconds.
func timevalNs(tv unix.Timeval) int64 { return tv.Sec*1e9 + tv.Usec*1e3 }

// nsTimeval converts nanoseconds to a struct timeval, rounding up to the
// next microsecond so that a time left stays non-zero.
func nsTimeval(ns int64) unix.Timeval {
	us := (ns + 999) / 1000
	return unix.Timeval{Sec: us / 1e6, Usec: us % 1e6}
}
