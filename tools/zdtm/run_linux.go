package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// runner runs tests one after the other and reaps every orphan that reaches it as subreaper
// (the daemonised tests, the trees rtcr killed, the restored trees once rtcr exits).
type runner struct {
	static string // the zdtm static directory: the tests' working directory
	rtcr   string // rtcr binary
	work   string // images and logs

	mu      sync.Mutex
	managed map[int]bool // children os/exec waits for itself
}

// result is one test's outcome.
type result struct {
	result string // PASS, FAIL or SKIP
	step   string // start, dump, restore, state, check
	reason string
}

// reap waits for every zombie child that os/exec does not own.
func (r *runner) reap() {
	self := os.Getpid()
	for {
		time.Sleep(10 * time.Millisecond)
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", self))
		r.mu.Lock()
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				pid, _ := strconv.Atoi(f)
				if pid == 0 || r.managed[pid] {
					continue
				}
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
		}
		r.mu.Unlock()
	}
}

// command runs argv in dir with env added, waits for it (at most d) and returns its combined
// output.
func (r *runner) command(dir string, env []string, d time.Duration, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Stdin = nil
	r.mu.Lock()
	err := cmd.Start()
	if err == nil {
		if r.managed == nil {
			r.managed = map[int]bool{}
		}
		r.managed[cmd.Process.Pid] = true
	}
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		err = <-done
		err = fmt.Errorf("timed out after %v (%v)", d, err)
	}
	r.mu.Lock()
	delete(r.managed, cmd.Process.Pid)
	r.mu.Unlock()
	return strings.TrimSpace(out.String()), err
}

// startLine asks the test's Makefile how zdtm starts it: the line of `make -n NAME.pid` that
// passes --pidfile.
func (r *runner) startLine(name string) (string, error) {
	out, err := r.command(r.static, nil, 30*time.Second, "make", "-s", "-n", name+".pid")
	if err != nil {
		return "", fmt.Errorf("make -n %s.pid: %w: %s", name, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--pidfile") {
			return strings.TrimSpace(l), nil
		}
	}
	return "", fmt.Errorf("make -n %s.pid: no line with --pidfile in %q", name, out)
}

// clean removes what an earlier run of name left in the static directory.
func (r *runner) clean(name string) {
	for _, s := range []string{".out", ".out.inprogress", ".pid", ".out.external"} {
		os.RemoveAll(filepath.Join(r.static, name+s))
	}
	// NAME.test, NAME.dir.test and what tests derive from them (NAME.test.0 …).
	for _, pat := range []string{name + ".test*", name + ".dir.test*"} {
		left, _ := filepath.Glob(filepath.Join(r.static, pat))
		for _, f := range left {
			os.RemoveAll(f)
		}
	}
}

// run runs one test through dump and restore.
func (r *runner) run(name string) result {
	d := readDesc(r.static, name)
	if d.flavor != "" && !hasWord(d.flavor, "h") {
		return result{"SKIP", "", "needs flavor " + d.flavor + " (namespaces)"}
	}
	if d.arch != "" && d.arch != "x86_64" {
		return result{"SKIP", "", "arch " + d.arch}
	}
	if hasWord(d.flags, "crfail") {
		return result{"SKIP", "", "CRIU expects the dump to fail"}
	}
	if _, err := os.Stat(filepath.Join(r.static, name)); err != nil {
		return result{"SKIP", "", "not built"}
	}
	r.clean(name)
	defer r.clean(name)
	line, err := r.startLine(name)
	if err != nil {
		return result{"FAIL", "start", err.Error()}
	}
	var env []string
	if !hasWord(d.flags, "suid") {
		// zdtm.py runs tests without the suid flag as this user (criu uses the same numbers).
		env = []string{"ZDTM_UID=18943", "ZDTM_GID=58467", "ZDTM_GROUPS=27495 48244"}
	}
	if out, err := r.command(r.static, env, 60*time.Second, "sh", "-c", line); err != nil {
		return result{"FAIL", "start", fmt.Sprintf("%v: %s %s", err, out, r.outfile(name))}
	}
	b, err := os.ReadFile(filepath.Join(r.static, name+".pid"))
	if err != nil {
		return result{"FAIL", "start", err.Error()}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return result{"FAIL", "start", "pid file: " + err.Error()}
	}
	// Last: whatever of the test is left (processes of other sessions
	// and groups were reparented to the harness, its subreaper).
	defer killOrphans()
	defer unix.Kill(-pid, unix.SIGKILL) // the test is its session's leader (setsid)
	defer unix.Kill(pid, unix.SIGKILL)
	before := visibleState(pid)

	dir := filepath.Join(r.work, name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{"FAIL", "dump", err.Error()}
	}
	img := filepath.Join(dir, "img")
	note := ""
	if d.opts != "" {
		note = " (CRIU needs " + d.opts + ")"
	}
	out, err := r.command(r.static, nil, 120*time.Second, r.rtcr, "dump", "--pid", strconv.Itoa(pid), "--dir", img, "-o", filepath.Join(dir, "dump.log"), "-v4")
	if err != nil {
		return result{"FAIL", "dump", oneLine(out) + note}
	}
	if !waitGone(pid, 10*time.Second) {
		return result{"FAIL", "dump", "the dumped process still exists 10 s after the dump"}
	}
	out, err = r.command(r.static, nil, 120*time.Second, r.rtcr, "restore", "--dir", img, "-o", filepath.Join(dir, "restore.log"), "-v4")
	if err != nil {
		return result{"FAIL", "restore", oneLine(out) + note}
	}
	after := visibleState(pid)
	diff := compareState(before, after)
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		return result{"FAIL", "check", fmt.Sprintf("SIGTERM to restored %d: %v", pid, err)}
	}
	if !waitGone(pid, 60*time.Second) {
		return result{"FAIL", "check", "still running 60 s after SIGTERM"}
	}
	outText, _ := os.ReadFile(filepath.Join(r.static, name+".out"))
	if !hasWord(string(outText), "PASS") {
		return result{"FAIL", "check", "test says: " + r.outfile(name)}
	}
	if diff != "" {
		return result{"FAIL", "state", diff}
	}
	return result{"PASS", "", ""}
}

// outfile returns the last meaningful lines of the test's output file (or the unfinished one).
func (r *runner) outfile(name string) string {
	b, err := os.ReadFile(filepath.Join(r.static, name+".out"))
	if err != nil {
		b, err = os.ReadFile(filepath.Join(r.static, name+".out.inprogress"))
		if err != nil {
			return "(no output file)"
		}
		b = append([]byte("(unfinished) "), b...)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return oneLine(strings.Join(lines, " / "))
}

// oneLine joins lines and keeps the first 400 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// killOrphans kills every child of the harness, which only the test that
// just ended can have left (session02 and session03 leave processes in
// other sessions and groups, reparented to the harness as subreaper), and
// their children as they are reparented in turn, until none is left or
// about 5 s have passed.
func killOrphans() {
	for i := 0; i < 250; i++ {
		var kids []int
		tasks, _ := filepath.Glob("/proc/self/task/*/children")
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					kids = append(kids, n)
				}
			}
		}
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = unix.Kill(k, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
