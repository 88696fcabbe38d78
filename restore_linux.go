package rtcr

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/stub"
	"github.com/rtcr/rtcr/internal/task"
	"golang.org/x/sys/unix"
)

// ErrPidTaken reports that a pid the image needs is in use.
var ErrPidTaken = stub.ErrPidTaken

// Restore recreates the process of the image in opts.Dir and lets it run.
// The whole image (checksums, files it refers to, kernel, pid) is checked
// before any process is created; if a later step fails the new process is
// killed and the error names the step.
func Restore(opts RestoreOptions) (*RestoreStats, error) {
	start := time.Now()
	c, err := image.ReadManifest(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if len(c.Processes) != 1 {
		return nil, fmt.Errorf("restore: image holds %d processes: process trees are %w", len(c.Processes), mem.ErrUnsupported)
	}
	p := &c.Processes[0]
	pages, closePages, err := image.OpenPages(opts.Dir, p)
	if err != nil {
		return nil, fmt.Errorf("restore %d: %w", p.Pid, err)
	}
	defer closePages()
	if err := preflight(c, p); err != nil {
		return nil, err
	}
	stats := &RestoreStats{Pid: p.Pid, PageBytes: p.PageFileSize}
	err = ptrace.Run(func() error { return restoreProcess(p, pages, stats) })
	stats.Total = time.Since(start)
	if err != nil {
		return nil, err
	}
	return stats, nil
}

// preflight checks everything that can be checked without a process.
func preflight(c *image.Checkpoint, p *image.Process) error {
	if mem.VDSOStart(p) == 0 {
		return fmt.Errorf("restore %d: image has no [vdso]: %w", p.Pid, mem.ErrUnsupported)
	}
	if err := mem.CheckVDSO(p); err != nil {
		var uts unix.Utsname
		_ = unix.Uname(&uts)
		return fmt.Errorf("restore %d: %w (image from %q, this is %q)", p.Pid, err, c.Kernel, unix.ByteSliceToString(uts.Release[:]))
	}
	if err := mem.CheckFiles(p); err != nil {
		return fmt.Errorf("restore %d: %w", p.Pid, err)
	}
	if err := files.Check(p.FDs); err != nil {
		return fmt.Errorf("restore %d: %w", p.Pid, err)
	}
	if _, err := os.Stat(p.Exe); err != nil {
		return fmt.Errorf("restore %d: executable %s: %w", p.Pid, p.Exe, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid)); err == nil {
		return fmt.Errorf("restore %d: %w (another process has it; kill it or wait for it to exit)", p.Pid, ErrPidTaken)
	}
	return nil
}

// restoreProcess runs on the tracer thread: stub, then each kind of state,
// then registers, then detach. Any failure kills the stub.
func restoreProcess(p *image.Process, pages []byte, stats *RestoreStats) (err error) {
	scratch, elfBase, err := stubPlace(p)
	if err != nil {
		return fmt.Errorf("restore %d: %w", p.Pid, err)
	}
	r, err := stub.Start(p.Pid, scratch, elfBase)
	if err != nil {
		return fmt.Errorf("restore %d: create stub: %w", p.Pid, err)
	}
	defer func() {
		if err != nil {
			ptrace.Kill(r.Pid)
		}
	}()
	step := func(name string, f func() error) error {
		if err := f(); err != nil {
			return fmt.Errorf("restore %d: %s: %w", p.Pid, name, err)
		}
		return nil
	}
	memStart := time.Now()
	if err := step("memory", func() error { return mem.Restore(r, p, pages) }); err != nil {
		return err
	}
	stats.MemoryTime = time.Since(memStart)
	// The stub's thread becomes the leader; the others are created by it.
	threads := []*ptrace.Injector{r.Injector}
	defer func() {
		if err != nil {
			for _, in := range threads[1:] {
				ptrace.Kill(in.Tid)
			}
		}
	}()
	steps := []struct {
		name string
		f    func() error
	}{
		{"mm and exe link", func() error { return mem.RestoreMM(r, p) }},
		{"fds", func() error { return files.Restore(r, p.FDs) }},
		{"attributes", func() error { return attr.Restore(r, p) }},
		{"signal actions", func() error { return sig.Restore(r, p.Sigactions) }},
		{"threads", func() error {
			for _, th := range p.Threads[1:] {
				in, err := task.CreateThread(r, th.Tid)
				if err != nil {
					return err
				}
				threads = append(threads, in)
			}
			return nil
		}},
		{"thread state", func() error {
			for i, in := range threads {
				if err := task.Restore(in, r, &p.Threads[i]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"remove scratch area", func() error { return dropScratch(r, p) }},
		{"registers", func() error {
			for i, in := range threads {
				if err := task.SetCPU(in.Tid, &p.Threads[i]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"detach", func() error {
			for _, in := range threads {
				if err := ptrace.Detach(in.Tid); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := step(s.name, s.f); err != nil {
			return err
		}
	}
	return nil
}

// dropScratch unmaps the stub's scratch area, injecting the munmap through
// the restored vdso's syscall instruction.
func dropScratch(r *ptrace.Remote, p *image.Process) error {
	off, err := mem.SyscallOffset(p.VDSO)
	if err != nil {
		return err
	}
	r.SyscallAddr = mem.VDSOStart(p) + uint64(off)
	if _, err := r.Syscall(unix.SYS_MUNMAP, r.Scratch, uint64(r.ScratchSize)); err != nil {
		return fmt.Errorf("munmap %#x: %w", r.Scratch, err)
	}
	return nil
}

// stubPlace picks where the stub's scratch area and ELF go: a free gap of
// the image's address space, so neither is in the way of any mapping.
func stubPlace(p *image.Process) (scratch, elfBase uint64, err error) {
	const need = ptrace.ScratchSize + 2*image.PageSize
	for base := uint64(1) << 32; base < 1<<46; base += 1 << 32 {
		free := true
		for _, v := range p.VMAs {
			if v.Start < base+need && base < v.End {
				free = false
				break
			}
		}
		if free {
			return base, base + ptrace.ScratchSize + image.PageSize, nil
		}
	}
	return 0, 0, errors.New("no free address range for the restore stub")
}
