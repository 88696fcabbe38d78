package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (new pid and time namespaces): run as root, CI does")
	}
}

// TestRunExitStatusAndStdio: rtcr run passes stdio through, gives the
// program pid 2 in a new pid namespace and a new time namespace (the
// program sees the host's /proc: rtcr makes no mount namespace), and
// exits with the program's status.
func TestRunExitStatusAndStdio(t *testing.T) {
	requireRoot(t)
	stdout, stderr, code := runRtcr(t, "run", "--", "sh", "-c",
		`echo "pid $$"; readlink /proc/self/ns/time; exit 7`)
	if code != 7 {
		t.Fatalf("exit %d, want 7; stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	own, _ := os.Readlink("/proc/self/ns/time")
	if len(lines) != 2 || lines[0] != "pid 2" || lines[1] == own {
		t.Fatalf("output %q: want pid 2 and a time namespace other than %s", stdout, own)
	}
}

// TestRunForwardsSignals: a SIGTERM sent to rtcr run reaches the program,
// whose exit status rtcr run then exits with; a program killed by a signal
// gives 128+signal.
func TestRunForwardsSignals(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "run", "--", "sh", "-c",
		`trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Env = append(os.Environ(), "RTCR_AS_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("first line %q, want ready", sc.Text())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !sc.Scan() || sc.Text() != "got TERM" {
			t.Errorf("after SIGTERM the program said %q, want got TERM", sc.Text())
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the program did not react to SIGTERM")
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 42 {
		t.Fatalf("rtcr run: %v, want exit status 42", err)
	}
	if _, _, code := runRtcr(t, "run", "--", "sh", "-c", "kill -KILL $$"); code != 128+9 {
		t.Fatalf("program killed by SIGKILL: rtcr run exit %d, want %d", code, 128+9)
	}
}

// TestRunPeriodicCheckpoints: rtcr run --dir --every --keep 2 checkpoints
// the running tree while it runs, leaving it running, into DIR/1, DIR/2 …,
// keeps the newest 2, and DIR/latest names the newest, a readable image.
func TestRunPeriodicCheckpoints(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir() + "/ck"
	_, stderr, code := runRtcr(t, "run", "--dir", dir, "--every", "150ms", "--keep", "2", "--",
		"sh", "-c", `i=0; while [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done; exit 3`)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (the program ran to its end); stderr %q", code, stderr)
	}
	if !strings.Contains(stderr, "rtcr run: checkpoint 1 into "+dir+"/1 (frozen ") || strings.Contains(stderr, "failed") {
		t.Fatalf("stderr %q: want successful checkpoints", stderr)
	}
	// The last one may be "not taken" (the program ended meanwhile).
	newest := len(regexp.MustCompile(`rtcr run: checkpoint \d+ into `).FindAllString(stderr, -1))
	if newest < 3 {
		t.Skipf("only %d checkpoints in 3 s on this busy machine; keep not checked", newest)
	}
	link, err := os.Readlink(dir + "/latest")
	if err != nil || link != strconv.Itoa(newest) {
		t.Fatalf("latest -> %q (%v), want %d", link, err, newest)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{strconv.Itoa(newest - 1), strconv.Itoa(newest), "latest"}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("series holds %v, want %v", names, want)
	}
	if _, _, code := runRtcr(t, "inspect", "--dir", dir+"/latest"); code != 0 {
		t.Fatalf("inspect of the latest periodic image: exit %d", code)
	}
}
