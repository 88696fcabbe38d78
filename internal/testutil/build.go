// Package testutil holds helpers shared by rtcr's tests: building the C
// target programs in testdata/ and waiting for their output.
package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type buildKey struct {
	name   string
	static bool
}

type buildResult struct {
	once sync.Once
	path string
	err  string // gcc's output (or another reason) when the build failed
}

var (
	buildMu    sync.Mutex
	buildDir   string // per test binary, created on first use
	buildDirOK bool
	builds     = map[buildKey]*buildResult{}
)

// BuildC compiles testdata/<name>.c of the repository (found by walking up
// from the working directory to the directory holding go.mod) with
// "gcc -O1 -g -Wall", plus -static when static is set and plus the flags of
// any "// cflags: ..." line in the source, and returns the executable's
// path. Each (name, static) pair is built once per test binary, into a
// temporary directory. It skips the test when gcc is not installed and
// fails it with gcc's output when the build fails.
func BuildC(t testing.TB, name string, static bool) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed: cannot build the C test programs in testdata/")
	}
	dir, r := buildSlot(t, buildKey{name, static})
	r.once.Do(func() { r.path, r.err = build(gcc, dir, name, static) })
	if r.err != "" {
		t.Fatalf("building testdata/%s.c (static=%v): %s", name, static, r.err)
	}
	return r.path
}

// buildSlot returns the build directory (creating it on first use) and the
// once-only build result for key.
func buildSlot(t testing.TB, key buildKey) (string, *buildResult) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if !buildDirOK {
		dir, err := os.MkdirTemp("", "rtcr-testbin-")
		if err != nil {
			t.Fatalf("creating the build directory: %v", err)
		}
		buildDir, buildDirOK = dir, true
	}
	r := builds[key]
	if r == nil {
		r = &buildResult{}
		builds[key] = r
	}
	return buildDir, r
}

func build(gcc, dir, name string, static bool) (string, string) {
	root, err := RepoRoot()
	if err != nil {
		return "", err.Error()
	}
	src := filepath.Join(root, "testdata", name+".c")
	text, err := os.ReadFile(src)
	if err != nil {
		return "", err.Error()
	}
	out := filepath.Join(dir, name)
	args := []string{"-O1", "-g", "-Wall"}
	if static {
		out += "-static"
		args = append(args, "-static")
	}
	args = append(append(args, cflags(text)...), "-o", out, src)
	if msg, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		return "", "gcc " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(msg)
	}
	return out, ""
}

// cflags returns the flags of the "// cflags: ..." lines of a C source.
func cflags(src []byte) []string {
	var flags []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "// cflags:"); ok {
			flags = append(flags, strings.Fields(rest)...)
		}
	}
	return flags
}

// RepoRoot returns the repository root: the nearest directory, from the
// working directory upwards, that contains go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RemoveBuilds deletes the directory holding the programs built by BuildC.
// Call it from TestMain after m.Run, if at all; BuildC must not be called
// afterwards.
func RemoveBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDirOK {
		os.RemoveAll(buildDir)
	}
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (ptrace, clone3 set_tid, PR_SET_MM_MAP): run as root, CI does")
	}
}

// WaitForFile polls every 5 ms until the file at path exists and contains
// substr, and fails the test, showing the file's content, after timeout.
func WaitForFile(t testing.TB, path, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte(substr)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %q in %s (read error: %v); content:\n%s",
				timeout, substr, path, err, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitForLines polls every 5 ms until the file at path holds at least n
// complete (newline-terminated) lines and returns all its complete lines,
// without their newlines. It fails the test, showing the file's content,
// after timeout.
func WaitForLines(t testing.TB, path string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(path)
		var lines []string
		if end := bytes.LastIndexByte(data, '\n'); end >= 0 {
			lines = strings.Split(string(data[:end]), "\n")
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %d lines in %s (have %d); content:\n%s",
				timeout, n, path, len(lines), data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
