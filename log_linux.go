package rtcr

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/tree"
)

// Logging: every step of a dump or restore is one Info line naming the
// step, the pid it worked on and how long it took (`msg=fds pid=4242
// took=85µs count=4`); details (each fd, thread, VMA) are Debug; a failure
// is Error. A nil Logger logs nothing.

// logger returns l, or a logger that drops everything if l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// stepTimer logs the steps of one process, each with the time since the
// previous one: call done after each step.
type stepTimer struct {
	log  *slog.Logger
	pid  int
	last time.Time
}

// newStepTimer starts timing the steps of pid.
func newStepTimer(log *slog.Logger, pid int) *stepTimer {
	return &stepTimer{log: log, pid: pid, last: time.Now()}
}

// done logs that step name of the process finished, with its duration
// and the key-value pairs args, and starts timing the next step.
func (s *stepTimer) done(name string, args ...any) {
	now := time.Now()
	logStep(s.log, s.pid, name, now.Sub(s.last), args...)
	s.last = now
}

// logStep logs one step of pid that took d.
func logStep(log *slog.Logger, pid int, name string, d time.Duration, args ...any) {
	log.Info(name, append([]any{"pid", pid, "took", d.Round(time.Microsecond)}, args...)...)
}

// logFDs logs each fd of a process at Debug.
func logFDs(log *slog.Logger, pid int, fds []image.FD) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	for _, fd := range fds {
		log.Debug("fd", "pid", pid, "fd", fd.Num, "kind", fd.Kind, "path", fd.Path, "flags", hex(fd.Flags))
	}
}

// logVMAs logs each memory mapping of a process at Debug.
func logVMAs(log *slog.Logger, p *image.Process) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	for _, v := range p.VMAs {
		log.Debug("vma", "pid", p.Pid, "start", hex(v.Start), "end", hex(v.End), "prot", prot(v.Prot), "shared", v.Shared,
			"kind", v.Kind, "name", v.Name, "page_runs", len(v.Pages))
	}
}

// logThread logs one thread of a process at Debug.
func logThread(log *slog.Logger, pid int, th *image.Thread) {
	log.Debug("thread", "pid", pid, "tid", th.Tid, "name", th.Name, "rip", hex(th.Regs.Rip),
		"syscall", th.Syscall, "pending", len(th.Pending))
}

// threadCount returns how many threads a frozen tree has.
func threadCount(f *tree.Frozen) int {
	n := 0
	for _, tids := range f.Tids {
		n += len(tids)
	}
	return n
}

// prot returns PROT_* bits as "rwx", "r--" …
func prot(p int) string {
	b := []byte("---")
	for i, c := range "rwx" {
		if p&(1<<i) != 0 {
			b[i] = byte(c)
		}
	}
	return string(b)
}

// hex prints as a hexadecimal number in log lines (addresses, flags).
type hex uint64

func (h hex) String() string { return fmt.Sprintf("%#x", uint64(h)) }
