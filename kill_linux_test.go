package rtcr_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// TestKillDumpNeverHarmsTarget SIGKILLs `rtcr dump` at random moments and
// checks that the target always runs on unharmed: not traced, not stopped,
// its memory, signal mask and interrupted sleeps intact, its SIGUSR1
// handler still called. A dump without --leave-running may kill the target
// only once the image is complete.
//
// Half the kills fall anywhere in the dump, half in its first quarter.
// RTCR_KILL_RUNS sets the kills per configuration (default 6; the README's
// figures use 100) and RTCR_KILL_SEED the seed, printed on failure so a run
// can be replayed.
func TestKillDumpNeverHarmsTarget(t *testing.T) {
	testutil.RequireRoot(t)
	runs := envInt(t, "RTCR_KILL_RUNS", 6)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RTCR_KILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RTCR_KILL_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with RTCR_KILL_SEED=%d)", seed, seed)
	rtcrBin := testutil.BuildRtcr(t)
	victim := testutil.BuildC(t, "victim", false)
	for _, c := range []struct {
		mib, threads, procs int
		leaveRunning        bool
	}{{1, 1, 1, true}, {1, 1, 1, false}, {200, 1, 1, true}, {200, 1, 1, false}, {1, 4, 1, true}, {1, 1, 4, true}} {
		name := fmt.Sprintf("%dMiB/threads=%d/leave-running=%v", c.mib, c.threads, c.leaveRunning)
		if c.procs > 1 {
			// A tree: each process is frozen and injected into by a
			// tracer thread of its own, all at once.
			name = fmt.Sprintf("%dMiB/procs=%d/leave-running=%v", c.mib, c.procs, c.leaveRunning)
		}
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(c.mib)*2+boolBit(c.leaveRunning)+uint64(c.threads)<<32+uint64(c.procs)<<40))
			k := &killer{t: t, rtcr: rtcrBin, victim: victim, mib: c.mib, threads: c.threads, procs: c.procs, leave: c.leaveRunning}
			k.startVictim()
			span := k.calibrate()
			var during, after, harmed int
			for i := 0; i < runs; i++ {
				// Half the kills anywhere in the dump, half in its first
				// quarter, where the calls injected into the target are.
				limit := span + span/5
				if i%2 == 1 {
					limit = span / 4
				}
				delay := time.Duration(rng.Int64N(int64(limit)))
				complete, err := k.killAt(i, delay)
				if complete {
					after++
				} else {
					during++
				}
				if err != nil {
					harmed++
					if harmed <= 3 {
						t.Error(err)
					}
					k.waitGone()
					k.startVictim()
				}
			}
			t.Logf("%s: %d kills (%d during the dump, %d after it completed), dump takes ~%v, %d targets harmed",
				name, runs, during, after, span, harmed)
		})
	}
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// killer drives one configuration of the kill test.
type killer struct {
	t       *testing.T
	rtcr    string
	victim  string
	mib     int
	threads int
	procs   int // processes of the victim's tree (1: no children)
	leave   bool
	tg      *testutil.Target
	usr1    int // SIGUSR1s sent to the current victim
}

func (k *killer) startVictim() {
	k.t.Helper()
	k.tg = testutil.StartTarget(k.t, k.victim, "ready", strconv.Itoa(k.mib), strconv.Itoa(k.threads), strconv.Itoa(k.procs))
	k.usr1 = 0
}

// imageDir returns a fresh directory for one dump, in memory when possible.
func (k *killer) imageDir() string {
	k.t.Helper()
	base := "/dev/shm"
	if _, err := os.Stat(base); err != nil {
		base = ""
	}
	d, err := os.MkdirTemp(base, "rtcr-kill-")
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "img")
}

// dumpCmd returns the rtcr command dumping the victim into dir.
func (k *killer) dumpCmd(dir string) *exec.Cmd {
	args := []string{"dump", "--pid", strconv.Itoa(k.tg.Pid), "--dir", dir}
	if k.leave {
		args = append(args, "-R")
	}
	cmd := exec.Command(k.rtcr, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd
}

// calibrate runs one whole dump with --leave-running and returns how long
// it took: kills are spread over that span (and a fifth more).
func (k *killer) calibrate() time.Duration {
	k.t.Helper()
	dir := k.imageDir()
	args := []string{"dump", "--pid", strconv.Itoa(k.tg.Pid), "--dir", dir, "-R"}
	start := time.Now()
	if out, err := exec.Command(k.rtcr, args...).CombinedOutput(); err != nil {
		k.t.Fatalf("calibration dump: %v\n%s", err, out)
	}
	span := time.Since(start)
	os.RemoveAll(filepath.Dir(dir))
	if err := k.checkHealthy("after the calibration dump"); err != nil {
		k.t.Fatal(err)
	}
	return span
}

// killAt starts a dump, SIGKILLs rtcr after delay, and checks the victim.
// It reports whether the dump had completed its image before the kill, and
// how the victim was harmed, if it was.
func (k *killer) killAt(i int, delay time.Duration) (bool, error) {
	k.t.Helper()
	dir := k.imageDir()
	cmd := k.dumpCmd(dir)
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	time.Sleep(delay)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	finished := err == nil
	_, serr := os.Stat(filepath.Join(dir, "manifest.img"))
	complete := serr == nil
	what := fmt.Sprintf("kill %d after %v (rtcr finished: %v, image complete: %v)", i, delay, finished, complete)
	if !k.leave && complete {
		// The dump completed and was asked to kill the target: it may be
		// dead (or not yet, if rtcr died while killing). Start afresh.
		k.waitGone()
		k.startVictim()
		return true, nil
	}
	return complete, k.checkHealthy(what)
}

// waitGone kills and reaps the victim.
func (k *killer) waitGone() {
	_ = unix.Kill(k.tg.Pid, unix.SIGKILL)
	_ = k.tg.Cmd.Wait()
}

// checkHealthy waits until the victim is released (not traced, not
// stopped), then proves it runs correctly: its SIGUSR1 handler reports the
// signal and it keeps ticking.
func (k *killer) checkHealthy(what string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := k.dead(what); err != nil {
			return err
		}
		pid, st, err := k.untraced()
		if err == nil && pid == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: victim %d (process %d of its tree) still traced or stopped after 30 s (%+v, %v)", what, k.tg.Pid, pid, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := k.outLen()
	k.usr1++
	if err := unix.Kill(k.tg.Pid, unix.SIGUSR1); err != nil {
		return fmt.Errorf("%s: signal victim: %w", what, err)
	}
	want := fmt.Sprintf("usr1 %d\n", k.usr1)
	for {
		if err := k.dead(what); err != nil {
			return err
		}
		rest := k.outFrom(before)
		if i := strings.Index(rest, want); i >= 0 && strings.Contains(rest[i:], "tick ") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: victim %d alive but not running correctly: no %q and tick within 30 s; output since:\n%s",
				what, k.tg.Pid, strings.TrimSpace(want), rest)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// untraced returns 0 when the victim and its children all run untraced
// and not stopped, else the first that does not (and its status).
func (k *killer) untraced() (int, *procfs.Status, error) {
	pids := []int{k.tg.Pid}
	if k.procs > 1 {
		m, err := tree.ChildMap()
		if err != nil {
			return k.tg.Pid, nil, err
		}
		if len(m[k.tg.Pid]) != k.procs-1 {
			return k.tg.Pid, nil, fmt.Errorf("victim has children %v, want %d", m[k.tg.Pid], k.procs-1)
		}
		pids = append(pids, m[k.tg.Pid]...)
	}
	for _, pid := range pids {
		st, err := procfs.ReadStatus(pid)
		if err != nil || st.TracerPid != 0 || st.State == 't' || st.State == 'T' {
			return pid, st, err
		}
	}
	return 0, nil, nil
}

// dead returns an error if the victim has exited, naming how.
func (k *killer) dead(what string) error {
	var ws unix.WaitStatus
	pid, err := unix.Wait4(k.tg.Pid, &ws, unix.WNOHANG, nil)
	if err != nil || pid == 0 {
		return nil
	}
	tail := k.outFrom(max(0, k.outLen()-300))
	switch {
	case ws.Signaled():
		return fmt.Errorf("%s: victim %d killed by %v; output tail:\n%s", what, k.tg.Pid, ws.Signal(), tail)
	default:
		return fmt.Errorf("%s: victim %d exited with status %d; output tail:\n%s", what, k.tg.Pid, ws.ExitStatus(), tail)
	}
}

func (k *killer) outLen() int {
	fi, err := os.Stat(k.tg.Out)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

func (k *killer) outFrom(off int) string {
	b, _ := os.ReadFile(k.tg.Out)
	if off > len(b) {
		return ""
	}
	return string(b[off:])
}
