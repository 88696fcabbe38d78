package rtcr_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// TestKilledRestoreLeavesNothing starts the real `rtcr restore` of a
// counter's image again and again, SIGKILLs it at a random moment within
// a restore's duration, and checks that nothing of that restore lives on:
// a reader of rtcr's stdout and stderr gets EOF, and no process is left but,
// when the kill came after the restore was complete, the restored counter,
// which then runs untraced and continues from the checkpoint. The test
// process is a child subreaper meanwhile, so every orphan of the killed
// rtcr becomes its child and is seen. It does so for a single process and
// for an `rtcr run` tree (init and counter in new namespaces).
// RTCR_KILL_SEED replays a run (the seed is logged), RTCR_KILL_RUNS sets
// the number of kills of each (default 40).
func TestKilledRestoreLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	seed := time.Now().UnixNano()
	if v := os.Getenv("RTCR_KILL_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("RTCR_KILL_SEED=%q: %v", v, err)
		}
		seed = n
	}
	runs := int64(envInt(t, "RTCR_KILL_RUNS", 40))
	t.Logf("seed %d (RTCR_KILL_SEED=%d replays it), %d kills each", seed, seed, runs)
	bin := testutil.BuildRtcr(t)
	counter := testutil.BuildC(t, "counter", false)
	for _, ns := range []bool{false, true} {
		t.Run(fmt.Sprintf("namespace=%v", ns), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			var tg *target
			if ns {
				tg = start(t, bin, "run", "--", counter)
			} else {
				tg = start(t, counter)
			}
			testutil.WaitForLines(t, tg.out, 3, 10*time.Second)
			dir := tg.dump(false)
			if ns {
				tg.done = true // rtcr run was reaped; its pid is no restore's
			}
			// The number the restored counter prints first.
			next := len(testutil.WaitForLines(t, tg.out, 0, time.Second))

			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
				t.Fatal(err)
			}
			defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
			k := &killRun{t: t, bin: bin, dir: dir, pid: tg.pid, ns: ns, out: tg.out, next: next}
			defer k.cleanup()

			// How long a whole restore takes here, start to exit (the
			// median of 3).
			var durs []time.Duration
			for i := 0; i < 3; i++ {
				d, complete := k.once(-1)
				if !complete {
					t.Fatalf("an uninterrupted restore did not restore the counter")
				}
				durs = append(durs, d)
			}
			slices.Sort(durs)
			dur := durs[1]
			completed := 0
			for i := int64(0); i < runs; i++ {
				delay := time.Duration(rng.Int64N(int64(dur)))
				if _, complete := k.once(delay); complete {
					completed++
				}
				if t.Failed() {
					t.Fatalf("kill %d of seed %d, %v after the start", i, seed, delay)
				}
			}
			t.Logf("%d kills within %v (a whole restore): %d left the restored counter running (the restore was complete), %d left nothing",
				runs, dur, completed, int(runs)-completed)
		})
	}
}

// killRun restores one image with the rtcr command and kills it.
type killRun struct {
	t    *testing.T
	bin  string
	dir  string
	pid  int    // the counter's pid (unless ns)
	ns   bool   // the image is of an rtcr run tree
	out  string // the counter's output file
	next int    // the first number a restored counter prints
}

// once runs `rtcr restore`, SIGKILLs it after delay (lets it finish when
// delay < 0) and checks what is left. It returns how long rtcr ran and
// whether the counter was restored (and is now killed again).
func (k *killRun) once(delay time.Duration) (time.Duration, bool) {
	t := k.t
	t.Helper()
	before, err := os.Stat(k.out)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(k.bin, "restore", "--dir", k.dir)
	cmd.Stdout, cmd.Stderr = w, w
	began := time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if delay >= 0 {
		time.Sleep(delay)
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	ran := time.Since(began)
	// Whoever reads rtcr's output must get EOF.
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	output, rerr := io.ReadAll(r)
	if rerr != nil {
		var st unix.Stat_t
		_ = unix.Fstat(int(r.Fd()), &st)
		t.Errorf("no EOF on rtcr's stdout 10 s after it ended (%v): %v; held by %s", werr, rerr, pipeHolders(st.Ino))
	}
	if delay < 0 && werr != nil {
		t.Fatalf("rtcr restore: %v: %s", werr, output)
	}
	complete := false
	for _, c := range k.children() {
		// The restored tree, if complete, is killed here; anything else
		// must die by itself, of SIGKILL (EXITKILL, the death signal).
		restored := false
		if counter := k.restored(c); counter != 0 && k.verify(counter, before.Size()) {
			complete, restored = true, true
			_ = unix.Kill(c, unix.SIGKILL)
		} else if !k.exits(c) {
			st, _ := procfs.ReadStat(c)
			t.Errorf("process %d (%+v) is left of a restore killed %v after its start:\n%s", c, st, delay, k.describe())
			_ = unix.Kill(c, unix.SIGKILL)
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(c, &ws, 0, nil)
		if !restored && ws.Signaled() && ws.Signal() != unix.SIGKILL {
			t.Errorf("process %d of a restore killed %v after its start died of %v", c, delay, ws.Signal())
		}
	}
	if err := unix.Kill(k.pid, 0); !k.ns && !errors.Is(err, unix.ESRCH) {
		t.Errorf("pid %d is taken after a restore killed %v after its start, not by a child of the test", k.pid, delay)
	}
	return ran, complete
}

// children returns the child processes of the test.
func (k *killRun) children() []int {
	m, err := tree.ChildMap()
	if err != nil {
		k.t.Fatal(err)
	}
	return m[os.Getpid()]
}

// restored returns the counter's pid if child c of the test is the
// restored tree: the counter's pid holding a live, untraced counter; for
// an rtcr run tree, an untraced init whose only child is that. Else 0.
func (k *killRun) restored(c int) int {
	counter := c
	if k.ns {
		m, err := tree.ChildMap()
		if err != nil || len(m[c]) != 1 || tracerPid(c) != 0 {
			return 0
		}
		counter = m[c][0]
	} else if c != k.pid {
		return 0
	}
	st, err := procfs.ReadStat(counter)
	if err != nil || st.Comm != "counter" || st.State == 'Z' || tracerPid(counter) != 0 {
		return 0
	}
	return counter
}

// verify tells a complete restore from one that only looks like it: the
// counter continues from the checkpoint (the lines it appends after
// offset are next, next+1, …), or it dies (rtcr was killed while it was
// still traced, and the SIGKILL that PTRACE_O_EXITKILL sends detaches it
// a moment before it kills it). Anything else fails the test.
func (k *killRun) verify(counter int, offset int64) bool {
	t := k.t
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(k.out)
		if int64(len(b)) > offset {
			b = b[offset:]
		} else {
			b = nil
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) > 4 {
			for i, l := range lines[:4] {
				if l != strconv.Itoa(k.next+i) {
					t.Errorf("restored counter printed %q, want %d, %d, …", lines[:4], k.next, k.next+1)
					break
				}
			}
			return true
		}
		if st, err := procfs.ReadStat(counter); err != nil || st.State == 'Z' {
			return false
		}
		if time.Now().After(deadline) {
			t.Errorf("restored counter printed %q in 10 s:\n%s", b, k.describe())
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe returns the status, kernel stack and system call of every
// child of the test and of their children, for failure messages.
func (k *killRun) describe() string {
	m, _ := tree.ChildMap()
	var b strings.Builder
	pids := m[os.Getpid()]
	for _, c := range pids {
		pids = append(pids, m[c]...)
	}
	for _, p := range pids {
		for _, f := range []string{"status", "stack", "syscall"} {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p, f))
			fmt.Fprintf(&b, "/proc/%d/%s:\n%s\n", p, f, data)
		}
	}
	return b.String()
}

// exits waits up to 10 s for child pid to become a zombie (a stub on its
// way out after its parent died).
func (k *killRun) exits(pid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := procfs.ReadStat(pid)
		if err != nil || st.State == 'Z' {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// cleanup kills and reaps whatever children are left.
func (k *killRun) cleanup() {
	for _, c := range k.children() {
		_ = unix.Kill(c, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(c, &ws, 0, nil)
	}
}

// pipeHolders names the processes that have pipe ino open.
func pipeHolders(ino uint64) string {
	want := fmt.Sprintf("pipe:[%d]", ino)
	ents, _ := os.ReadDir("/proc")
	var b bytes.Buffer
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == want {
				st, _ := procfs.ReadStat(pid)
				comm := "?"
				if st != nil {
					comm = fmt.Sprintf("%s, state %c, parent %d", st.Comm, st.State, st.Ppid)
				}
				fmt.Fprintf(&b, "%d (%s) fd %s; ", pid, comm, fd.Name())
				break
			}
		}
	}
	if b.Len() == 0 {
		return "nobody"
	}
	return b.String()
}
