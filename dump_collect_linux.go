package rtcr

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
	"log/slog"
	"slices"
	"strings"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/task"
	"github.com/rtcr/rtcr/internal/timer"
)

// collectTree records where process p sits: parent, process group,
// session, and whether it is a zombie (with its exit status).
func collectTree(p *image.Process, zombie bool) error {
	st, err := procfs.ReadStat(p.Pid)
	if err != nil {
		return err
	}
	p.Ppid, p.Pgid, p.Sid = st.Ppid, st.Pgrp, st.Session
	p.Comm = st.Comm
	if st.TtyNr != 0 {
		p.Tty, p.TtyFg = st.TtyNr, st.Tpgid
	}
	if zombie {
		p.Zombie, p.ExitStatus = true, st.ExitCode
	}
	return nil
}

// collectFiles reads the fd table of p (and its working directory, when
// that was removed) from outside: /proc and rtcr's own copies of the fds.
func collectFiles(log *slog.Logger, p *image.Process, fds *files.Tree) (err error) {
	pid := p.Pid
	t := newStepTimer(log, pid)
	if p.FDs, err = fds.Dump(pid); err != nil {
		return err
	}
	t.done("fds", "count", len(p.FDs))
	logFDs(log, pid, p.FDs)
	if dir, ok := strings.CutSuffix(p.Cwd, " (deleted)"); ok {
		d, err := fds.DumpCwd(pid)
		if err != nil {
			return err
		}
		p.Cwd, p.CwdDeleted = dir, &d
	}
	return nil
}

// collectInside gathers the state that takes calls injected into the
// process (and its ptrace-only state), on the process's tracer thread.
// Calls that must run inside the target are injected so that a killed rtcr
// never harms it (see ptrace.OpenLive), with a scratch mapping that is
// removed again before memory is read. The calls of the process and of
// its leader run as one batch, those of every other thread as one batch
// each (ptrace.Batch); under seccomp (sequential) they are made one by
// one.
//
// inject runs once the calls can be made (dirty tracking's setup).
func collectInside(ctx context.Context, log *slog.Logger, p *image.Process, tids []int, sequential bool, inject func(r *ptrace.Remote) error) (err error) {
	pid := p.Pid
	t := newStepTimer(log, pid)
	r, err := mem.OpenLiveThreads(pid, len(tids)-1)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.CloseRemote(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if sequential {
		r.Sequential()
	}
	t.done("scratch area", "unprotected_calls", r.WindowCalls)
	if err := inject(r); err != nil {
		return err
	}
	b := r.NewBatch()
	attrDone, err := attr.DumpBatch(r, b, p)
	if err != nil {
		return err
	}
	t.done("attributes")
	sigDone, err := sig.DumpBatch(r, b)
	if err != nil {
		return err
	}
	t.done("signal actions")
	credDone, err := cred.DumpBatch(r, b)
	if err != nil {
		return err
	}
	t.done("credentials")
	timerDone, err := timer.DumpBatch(r, b)
	if err != nil {
		return err
	}
	t.done("timers")
	mmDone, err := mem.DumpMMBatch(r, b)
	if err != nil {
		return err
	}
	t.done("mm")
	var leaderDone func() (image.Thread, error)
	if slices.Contains(tids, r.Tid) {
		if leaderDone, err = task.DumpBatch(r, r.Injector, b, r.Tid); err != nil {
			return err
		}
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return err
	}
	t.done("injected calls", "calls", b.Len(), "batched", r.Batched() > 0)
	if err := attrDone(); err != nil {
		return err
	}
	if p.Sigactions, err = sigDone(); err != nil {
		return err
	}
	if p.Creds, p.Prctl, err = credDone(); err != nil {
		return err
	}
	if p.Itimers, p.PosixTimers, err = timerDone(); err != nil {
		return err
	}
	if p.MM, err = mmDone(); err != nil {
		return err
	}
	var leader image.Thread
	if leaderDone != nil {
		if leader, err = leaderDone(); err != nil {
			return err
		}
	}
	if p.SharedPending, err = sig.DumpPending(pid, true); err != nil {
		return err
	}
	t.done("pending signals", "count", len(p.SharedPending))
	tracerCPU, processCPU := cpuTime(unix.CLOCK_THREAD_CPUTIME_ID), cpuTime(processClock(pid))
	// The other threads' injected calls, side by side.
	var others []int
	for _, tid := range tids {
		if tid != r.Tid {
			others = append(others, tid)
		}
	}
	if err := ctx.Err(); err != nil {
		return ErrInterrupted
	}
	states, err := task.DumpThreads(r, others)
	if err != nil {
		return err
	}
	for _, tid := range tids {
		if err := ctx.Err(); err != nil {
			return ErrInterrupted
		}
		th := leader
		if tid != r.Tid {
			th, states = states[0], states[1:]
		}
		if th.Robust, err = task.DumpRobust(tid); err != nil {
			return err
		}
		if th.Pending, err = sig.DumpPending(tid, false); err != nil {
			return err
		}
		if th.Sched, err = attr.DumpSched(tid); err != nil {
			return err
		}
		p.Threads = append(p.Threads, th)
		logThread(log, pid, &th)
	}
	// The CPU time of the tracer thread and of the process for the step:
	// with many threads, the cost per thread on both sides.
	t.done("threads", "count", len(tids), "tracer_cpu", cpuTime(unix.CLOCK_THREAD_CPUTIME_ID)-tracerCPU,
		"process_cpu", cpuTime(processClock(pid))-processCPU)
	return ctx.Err()
}

// cpuTime reads the CPU-time clock clk (0 if it cannot).
func cpuTime(clk int32) time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(clk, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// processClock is the CPU-time clock of process pid, all its threads
// (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)).
func processClock(pid int) int32 { return ^int32(pid)<<3 | 2 }
