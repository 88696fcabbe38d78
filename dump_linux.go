package rtcr

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/task"
	"golang.org/x/sys/unix"
)

// Dump checkpoints process opts.Pid into opts.Dir. Whatever fails, and
// whenever ctx is cancelled, the target is released running as before;
// it is killed only when the image is complete and LeaveRunning is false.
func Dump(ctx context.Context, opts DumpOptions) (*DumpStats, error) {
	start := time.Now()
	if opts.Pid <= 0 {
		return nil, fmt.Errorf("dump: invalid pid %d", opts.Pid)
	}
	if opts.Pid == os.Getpid() {
		return nil, fmt.Errorf("dump: pid %d is rtcr itself", opts.Pid)
	}
	if _, err := procfs.ReadStat(opts.Pid); err != nil {
		return nil, fmt.Errorf("dump %d: no such process: %w", opts.Pid, err)
	}
	if err := image.PrepareDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	stats := &DumpStats{}
	err := ptrace.Run(func() error { return dumpFrozen(ctx, opts, stats) })
	stats.Total = time.Since(start)
	if err != nil {
		return nil, err
	}
	return stats, nil
}

// dumpFrozen freezes the target, collects and writes the image, then
// releases or kills the target. It runs on the tracer thread.
func dumpFrozen(ctx context.Context, opts DumpOptions, stats *DumpStats) (err error) {
	pid := opts.Pid
	frozenAt := time.Now()
	tids, err := ptrace.Freeze(pid)
	if err != nil {
		return fmt.Errorf("dump %d: %w", pid, err)
	}
	kill := false
	defer func() {
		if kill {
			killTraced(pid, tids)
		} else if rerr := ptrace.Release(tids); rerr != nil && err == nil {
			err = fmt.Errorf("dump %d: release: %w", pid, rerr)
		}
		stats.Freeze = time.Since(frozenAt)
	}()
	p := &image.Process{Pid: pid}
	if err := collect(ctx, p, tids); err != nil {
		return fmt.Errorf("dump %d: %w", pid, err)
	}
	memStart := time.Now()
	if err := writeImage(ctx, opts.Dir, p); err != nil {
		return fmt.Errorf("dump %d: %w", pid, err)
	}
	stats.MemoryTime = time.Since(memStart)
	stats.PageBytes = p.PageFileSize
	kill = !opts.LeaveRunning
	return nil
}

// killTraced kills a process rtcr traces and collects the death of every
// thread (the leader is reported last, after all others are waited for),
// so that the real parent can reap it.
func killTraced(pid int, tids []int) {
	_ = unix.Kill(pid, unix.SIGKILL)
	for i := len(tids) - 1; i >= 0; i-- {
		_, _ = ptrace.Wait(tids[i])
	}
}

// collect gathers every kind of non-memory state. Calls that must run
// inside the target are injected through the vdso's syscall instruction,
// with a scratch mapping that is removed again before memory is read.
func collect(ctx context.Context, p *image.Process, tids []int) (err error) {
	pid := p.Pid
	if p.FDs, err = files.Dump(pid); err != nil {
		return err
	}
	if err := attr.Dump(pid, p); err != nil {
		return err
	}
	sysAddr, err := mem.SyscallAddr(pid)
	if err != nil {
		return err
	}
	r, err := ptrace.OpenRemote(pid, sysAddr)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.CloseRemote(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if p.Sigactions, err = sig.Dump(r); err != nil {
		return err
	}
	if p.MM, err = mem.DumpMM(r); err != nil {
		return err
	}
	for _, tid := range tids {
		if err := ctx.Err(); err != nil {
			return ErrInterrupted
		}
		th, err := task.Dump(r, tid)
		if err != nil {
			return err
		}
		p.Threads = append(p.Threads, th)
	}
	return ctx.Err()
}

// writeImage copies the memory into the page file, then writes the
// manifest; the manifest goes last, so a partial image has none.
func writeImage(ctx context.Context, dir string, p *image.Process) error {
	p.PageFile = image.PageFileName(p.Pid)
	err := image.WriteFileAtomic(dir, p.PageFile, func(w io.Writer) error {
		pw := image.NewPageWriter(&ctxWriter{ctx: ctx, w: w})
		vmas, vdso, err := mem.Dump(p.Pid, pw)
		if err != nil {
			return err
		}
		p.VMAs, p.VDSO = vmas, vdso
		p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
		return nil
	})
	if err != nil {
		return err
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	c := &image.Checkpoint{
		Kernel:    unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Version[:]),
		Arch:      "x86_64",
		Created:   time.Now().UnixNano(),
		Processes: []image.Process{*p},
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("image about to be written is inconsistent: %w", err)
	}
	return image.WriteManifest(dir, c)
}

// ctxWriter fails writes once ctx is cancelled, which stops a dump.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(b []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, ErrInterrupted
	}
	return c.w.Write(b)
}
