package ptrace

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// Freeze seizes and stops every thread of process pid. It re-reads
// /proc/PID/task until a pass finds no thread it has not stopped yet, so a
// process creating threads while it is being frozen is caught whole (a new
// thread of a traced, stopped creator cannot appear unseen: clone events are
// reported). On error every thread seized so far is released.
func Freeze(pid int) (tids []int, err error) {
	stopped := map[int]bool{}
	gone := map[int]bool{}     // threads that exited while rtcr froze the rest
	unwaited := map[int]bool{} // seized and interrupted, stop not seen yet
	defer func() {
		if err != nil {
			for tid := range stopped {
				if unwaited[tid] {
					// Detach needs the thread in its stop.
					_, _ = waitStopped(tid)
				}
				_ = Detach(tid)
			}
		}
	}()
	for {
		cur, err := procfs.ListTasks(pid)
		if err != nil {
			return nil, err
		}
		// Every new thread is asked to stop first and waited for after:
		// the threads stop side by side instead of one after the other.
		var waiting []int
		fresh := 0
		for _, tid := range cur {
			if stopped[tid] || gone[tid] {
				continue
			}
			fresh++
			stopped[tid] = true // released on error from here on
			wait, err := attach(pid, tid)
			if err != nil {
				return nil, fmt.Errorf("freeze %d: %w", pid, err)
			}
			if wait {
				waiting = append(waiting, tid)
				unwaited[tid] = true
			} else {
				delete(stopped, tid)
				gone[tid] = true
			}
		}
		for _, tid := range waiting {
			ok, err := waitStopped(tid)
			if err != nil {
				return nil, fmt.Errorf("freeze %d: %w", pid, err)
			}
			delete(unwaited, tid)
			if !ok {
				delete(stopped, tid)
				gone[tid] = true
			}
		}
		if fresh == 0 {
			break
		}
	}
	if !stopped[pid] {
		return nil, fmt.Errorf("freeze %d: the process exited", pid)
	}
	for tid := range stopped {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	// The thread-group leader first.
	for i, t := range tids {
		if t == pid {
			tids[0], tids[i] = tids[i], tids[0]
		}
	}
	return tids, nil
}

// attach seizes thread tid of pid and asks it to stop. It returns true
// when the thread will report a stop (waitStopped), false when it exited
// before it could be seized: it will never run again, so the frozen set is
// complete without it.
func attach(pid, tid int) (bool, error) {
	for try := 0; ; try++ {
		err := Seize(tid)
		switch {
		case err == nil:
			if err := Interrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
				return false, err
			}
			return true, nil // exiting (ESRCH): waitStopped sees it go
		case errors.Is(err, unix.ESRCH):
			return false, nil
		case errors.Is(err, unix.EPERM) && tracedByUs(pid, tid):
			// Created by a thread rtcr had already seized: the kernel
			// attached it to rtcr and it starts in a ptrace stop.
			return true, nil
		case errors.Is(err, unix.EPERM) && try < 1000:
			// An exiting thread cannot be attached; look again until
			// it is gone.
			if exiting(tid) {
				return false, nil
			}
			time.Sleep(100 * time.Microsecond)
		default:
			return false, fmt.Errorf("%w (%s)", err, describe(tid))
		}
	}
}

// describe says what thread tid is doing, for error messages.
func describe(tid int) string {
	st, err := procfs.ReadStatus(tid)
	if err != nil {
		return "gone"
	}
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", tid))
	sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tid))
	return fmt.Sprintf("state %c, tracer %d, in %s, syscall %s", st.State, st.TracerPid, wchan, strings.TrimSpace(strings.SplitN(string(sc), " ", 2)[0]))
}

// stopTimeout bounds the wait for a thread to stop, so that a dump never
// hangs with the rest of the process frozen.
const stopTimeout = 5 * time.Second

// waitStopped waits until tid reports the PTRACE_EVENT_STOP that
// PTRACE_INTERRUPT (or an automatic attach) causes; false if it exited
// first. Signals that arrive first are passed on to the thread, as they
// would have been without rtcr; clone events let it go on.
func waitStopped(tid int) (bool, error) {
	deadline := time.Now().Add(stopTimeout)
	pause := 10 * time.Microsecond
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.ECHILD):
			return false, nil // gone, and reaped by the kernel
		case err != nil:
			return false, fmt.Errorf("wait for %d: %w", tid, err)
		case got == 0:
			if time.Now().After(deadline) {
				return false, fmt.Errorf("thread %d did not stop within %v (%s)", tid, stopTimeout, describe(tid))
			}
			time.Sleep(pause)
			pause = min(2*pause, time.Millisecond)
			continue
		case ws.Exited() || ws.Signaled():
			return false, nil
		case !ws.Stopped():
			continue
		case event(ws) == abi.PTRACE_EVENT_STOP:
			// The interrupt's stop; also a group-stop of a stopped
			// process, reported with its stop signal (SIGSTOP …).
			return true, nil
		}
		sig := ws.StopSignal()
		if event(ws) > 0 {
			sig = 0 // a ptrace event, not a signal
		}
		// Any ptrace stop clears a pending PTRACE_INTERRUPT (the kernel's
		// "any trap clears pending STOP trap"): ask again, or the thread
		// runs on after this event (a clone3 in pthread_create, a signal).
		if err := Interrupt(tid); err != nil {
			return false, err
		}
		if err := unix.PtraceCont(tid, int(sig)); err != nil {
			return false, fmt.Errorf("resume %d after %v: %w", tid, ws.StopSignal(), err)
		}
	}
}

// event returns the ptrace event of a stop status (status >> 16), whatever
// its signal: WaitStatus.TrapCause only sees events reported with SIGTRAP.
func event(ws unix.WaitStatus) int { return int(ws) >> 16 }

// Release detaches every thread in tids, returning the first error.
func Release(tids []int) error {
	var first error
	for _, tid := range tids {
		if err := Detach(tid); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// tracedByUs reports whether thread tid of pid is traced by the calling
// thread (TracerPid is the tracer thread's id, not its process's).
func tracedByUs(pid, tid int) bool {
	st, err := procfs.ReadTaskStatus(pid, tid)
	return err == nil && st.TracerPid == unix.Gettid()
}

// exiting reports whether thread tid is gone or a zombie.
func exiting(tid int) bool {
	st, err := procfs.ReadStat(tid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}
