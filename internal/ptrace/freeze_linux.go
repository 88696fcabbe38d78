package ptrace

import (
	"errors"
	"fmt"
	"os"
	"sort"

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
	defer func() {
		if err != nil {
			for tid := range stopped {
				_ = Detach(tid)
			}
		}
	}()
	for {
		cur, err := procfs.ListTasks(pid)
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, tid := range cur {
			if stopped[tid] {
				continue
			}
			fresh++
			err := Seize(tid)
			switch {
			case errors.Is(err, unix.ESRCH):
				continue // the thread exited meanwhile
			case errors.Is(err, unix.EPERM) && tracedByUs(pid, tid):
				// Created by a thread rtcr had already seized: the kernel
				// attached it to rtcr and it starts in a ptrace stop.
			case err != nil:
				return nil, fmt.Errorf("freeze %d: %w", pid, err)
			default:
				stopped[tid] = true // seized: released on error from here on
				if err := Interrupt(tid); err != nil {
					return nil, fmt.Errorf("freeze %d: %w", pid, err)
				}
			}
			stopped[tid] = true
			if err := waitInterrupted(tid); err != nil {
				delete(stopped, tid)
				return nil, fmt.Errorf("freeze %d: %w", pid, err)
			}
		}
		if fresh == 0 {
			break
		}
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

// waitInterrupted waits until tid reports the PTRACE_EVENT_STOP that
// PTRACE_INTERRUPT causes. Signals that arrive first are passed on to the
// thread (resuming it), as they would have been without rtcr.
func waitInterrupted(tid int) error {
	for {
		ws, err := Wait(tid)
		if err != nil {
			return err
		}
		if !ws.Stopped() {
			continue
		}
		if ws.TrapCause() == abi.PTRACE_EVENT_STOP {
			return nil
		}
		// A signal-delivery stop: deliver the signal and keep waiting for
		// the interrupt, which is still pending.
		sig := ws.StopSignal()
		if ws.TrapCause() > 0 {
			sig = 0
		}
		if err := unix.PtraceCont(tid, int(sig)); err != nil {
			return fmt.Errorf("resume %d after %v: %w", tid, ws.StopSignal(), err)
		}
	}
}

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

// tracedByUs reports whether thread tid of pid is traced by this process.
func tracedByUs(pid, tid int) bool {
	st, err := procfs.ReadTaskStatus(pid, tid)
	return err == nil && st.TracerPid == os.Getpid()
}
