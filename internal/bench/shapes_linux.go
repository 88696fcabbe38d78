package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/stub"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// threadsText creates n-1 threads (clone with the flags of a POSIX thread
// and no stack: none of them ever touches one) and then every thread loops
// in pause():
//
//	mov r12d, n-1
//	again: mov eax, 56 ; mov edi, 0x50f00 ; xor esi, esi ; xor edx, edx
//	       xor r10d, r10d ; xor r8d, r8d ; syscall
//	       test eax, eax ; jz loop ; dec r12d ; jnz again
//	loop:  mov eax, 34 ; syscall ; jmp loop
var threadsText = []byte{
	0x41, 0xbc, 0x3f, 0x00, 0x00, 0x00, 0xb8, 0x38, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x0f, 0x05, 0x00,
	0x31, 0xf6, 0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0x0f, 0x05, 0x85, 0xc0, 0x74, 0x05,
	0x41, 0xff, 0xcc, 0x75, 0xe1, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7,
}

// treeText forks n-1 children, and every process loops in pause():
//
//	mov r12d, n-1
//	again: mov eax, 57 ; syscall ; test eax, eax ; jz loop
//	       dec r12d ; jnz again
//	loop:  mov eax, 34 ; syscall ; jmp loop
var treeText = []byte{
	0x41, 0xbc, 0x1f, 0x00, 0x00, 0x00, 0xb8, 0x39, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x85, 0xc0, 0x74,
	0x05, 0x41, 0xff, 0xcc, 0x75, 0xf0, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7,
}

// pauseText is a single thread looping in pause(), the baseline.
var pauseText = []byte{0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7}

// withCount returns text with its leading "mov r12d, imm32" set to n-1
// (n >= 2: the loop creates at least one thread or process).
func withCount(text []byte, n int) []byte {
	t := append([]byte(nil), text...)
	t[2], t[3], t[4], t[5] = byte(n-1), byte((n-1)>>8), 0, 0
	return t
}

// Shape is a benchmark of a process shape other than a big memory: many
// threads, or many processes.
type Shape struct {
	Name                  string
	Count                 int // threads or processes
	Freeze, Dump, Restore time.Duration
	// DumpCPU is rtcr's CPU time for the dump (best of runs): on a busy
	// machine the wall times include waiting for a CPU, this does not.
	DumpCPU              time.Duration
	baseFreeze, baseDump time.Duration
	baseRestore          time.Duration
	// CRIU holds the same measurements of CRIU, when RunShapes was given
	// a criu binary.
	CRIU *CRIU
}

// RunShapes measures dump (freeze time and total) and restore of a process
// with threads threads and of a tree of procs processes, best of runs, and
// the same for a single-threaded single process as the baseline. With
// criu, the path of a CRIU binary, every run also dumps and restores the
// same shapes with CRIU (see CRIU).
func RunShapes(dir string, threads, procs, runs int, criu string) ([]Shape, error) {
	work, err := os.MkdirTemp(dir, "rtcr-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	shapes := []Shape{
		{Name: fmt.Sprintf("%d threads", threads), Count: threads},
		{Name: fmt.Sprintf("%d processes", procs), Count: procs},
	}
	texts := [][]byte{withCount(threadsText, threads), withCount(treeText, procs)}
	var exec time.Duration
	if criu != "" {
		for r := 0; r < runs; r++ {
			d, err := criuExec(criu)
			if err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			best(&exec, d)
		}
	}
	for i := range shapes {
		if criu != "" {
			shapes[i].CRIU = &CRIU{Exec: exec}
		}
		for r := 0; r < runs; r++ {
			if c := shapes[i].CRIU; c != nil {
				m, err := criuShapeOnce(criu, work, texts[i], shapes[i].Count, i == 0)
				if err != nil {
					return nil, fmt.Errorf("bench %s with CRIU: %w", shapes[i].Name, err)
				}
				best(&c.Freeze, m.Freeze)
				best(&c.Dump, m.Dump)
				best(&c.Restore, m.Restore)
				best(&c.DumpCPU, m.DumpCPU)
			}
			tm, err := shapeOnce(work, texts[i], shapes[i].Count, i == 0)
			if err != nil {
				return nil, fmt.Errorf("bench %s: %w", shapes[i].Name, err)
			}
			best(&shapes[i].Freeze, tm.freeze)
			best(&shapes[i].Dump, tm.dump)
			best(&shapes[i].Restore, tm.restore)
			best(&shapes[i].DumpCPU, tm.dumpCPU)
			tm, err = shapeOnce(work, pauseText, 1, true)
			if err != nil {
				return nil, fmt.Errorf("bench baseline: %w", err)
			}
			best(&shapes[i].baseFreeze, tm.freeze)
			best(&shapes[i].baseDump, tm.dump)
			best(&shapes[i].baseRestore, tm.restore)
		}
	}
	return shapes, nil
}

// shapeOnce starts the program, waits for its n threads or processes,
// dumps it (killing it), restores it and kills the restored tree.
func shapeOnce(work string, text []byte, n int, threads bool) (times, error) {
	p, err := startText(work, text)
	if err != nil {
		return times{}, err
	}
	pid := p.Pid
	_ = p.Release()
	defer killTree(pid)
	if err := waitShape(pid, n, threads); err != nil {
		return times{}, err
	}
	return dumpRestore(work, pid)
}

// times are the measurements of one dump and restore: wall times, and the
// CPU time they took (rtcr's, plus the restored process's own, where the
// injected calls of the restore run): on a busy machine the wall times
// include waiting for a CPU, the CPU times do not.
type times struct {
	freeze, dump, restore time.Duration
	dumpCPU, restoreCPU   time.Duration
}

// cpuClock reads the CPU-time clock clk.
func cpuClock(clk int32) time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(clk, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// processCPU is the CPU time process pid has spent
// (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)).
func processCPU(pid int) time.Duration { return cpuClock(^int32(pid)<<3 | 2) }

// dumpRestore dumps pid and its children (killing them), waits until they
// are gone and restores them.
func dumpRestore(work string, pid int) (times, error) {
	pids := []int{pid}
	if m, err := tree.ChildMap(); err == nil {
		pids = append(pids, m[pid]...)
	}
	dir := filepath.Join(work, "img")
	defer os.RemoveAll(dir)
	var tm times
	// Collect the garbage of earlier runs now, not during this one.
	runtime.GC()
	c0 := cpuClock(unix.CLOCK_PROCESS_CPUTIME_ID)
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: dir, Logger: stepLog()})
	if err != nil {
		return tm, err
	}
	tm.dumpCPU = cpuClock(unix.CLOCK_PROCESS_CPUTIME_ID) - c0
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
	// The killed children are reaped by init, in its own time: measure
	// the restore, not that wait.
	if err := waitGone(pids); err != nil {
		return tm, err
	}
	runtime.GC()
	c0 = cpuClock(unix.CLOCK_PROCESS_CPUTIME_ID)
	rs, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		return tm, err
	}
	tm.restoreCPU = cpuClock(unix.CLOCK_PROCESS_CPUTIME_ID) - c0 + processCPU(pid)
	tm.freeze, tm.dump, tm.restore = st.Freeze, st.Total, rs.Total
	return tm, nil
}

// startText writes text as a program into a new file in work and starts
// it with /dev/null as fds 0–2. A new file each time: the killed processes
// of the previous run may still be executing the last one.
func startText(work string, text []byte) (*os.Process, error) {
	f, err := os.CreateTemp(work, "shape-")
	if err != nil {
		return nil, err
	}
	exe := f.Name()
	_, werr := f.Write(stub.Program(hogBase, text))
	if err := errors.Join(werr, f.Chmod(0o700), f.Close()); err != nil {
		return nil, err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	return os.StartProcess(exe, []string{"rtcr-bench-shape"}, &os.ProcAttr{Files: []*os.File{null, null, null}})
}

// waitShape waits until pid has n threads (or n-1 children), all asleep.
func waitShape(pid, n int, threads bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		have := 0
		if threads {
			tids, err := procfs.ListTasks(pid)
			if err != nil {
				return err
			}
			have = len(tids)
		} else {
			m, err := tree.ChildMap()
			if err != nil {
				return err
			}
			have = len(m[pid]) + 1
		}
		if have == n {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("process %d did not reach %d threads/processes", pid, n)
}

// waitGone waits until no process has any of pids.
func waitGone(pids []int) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for unix.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d still exists after the dump killed it", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// killTree kills pid and its children and reaps pid.
func killTree(pid int) {
	if m, err := tree.ChildMap(); err == nil {
		for _, c := range m[pid] {
			_ = unix.Kill(c, unix.SIGKILL)
		}
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
}

// PrintShapes writes the shape results as a table, with each time also as
// a multiple of the same measurement for one single-threaded process.
func PrintShapes(w io.Writer, shapes []Shape) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tfrozen\tdump\trestore\tvs. 1 process: frozen\tdump\trestore\t")
	for _, s := range shapes {
		x := func(a, b time.Duration) string { return fmt.Sprintf("%.1fx", a.Seconds()/b.Seconds()) }
		fmt.Fprintf(tw, "%s\t%v\t%v\t%v\t%s\t%s\t%s\t\n", s.Name,
			s.Freeze.Round(time.Millisecond/10), s.Dump.Round(time.Millisecond/10), s.Restore.Round(time.Millisecond/10),
			x(s.Freeze, s.baseFreeze), x(s.Dump, s.baseDump), x(s.Restore, s.baseRestore))
	}
	tw.Flush()
}
