package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// start runs the program with stdout (and stderr) sent to a file in a
// temporary directory, in that directory, and returns the command and the
// output file's path. The process is killed when the test ends.
func start(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	tg := StartTarget(t, bin, "", args...)
	return tg.Cmd, tg.Out
}

// checkCounting checks that lines are consecutive integers from first.
func checkCounting(t *testing.T, lines []string, first int) {
	t.Helper()
	for i, l := range lines {
		if n, err := strconv.Atoi(l); err != nil || n != first+i {
			t.Fatalf("line %d is %q, want %d; lines: %q", i, l, first+i, lines)
		}
	}
}

func TestCounter(t *testing.T) {
	for _, static := range []bool{false, true} {
		t.Run("static="+strconv.FormatBool(static), func(t *testing.T) {
			bin := BuildC(t, "counter", static)
			if again := BuildC(t, "counter", static); again != bin {
				t.Fatalf("second build gave %s, want the cached %s", again, bin)
			}
			_, out := start(t, bin)
			WaitForLines(t, out, 1, 5*time.Second)
			time.Sleep(50 * time.Millisecond)
			lines := WaitForLines(t, out, 3, 5*time.Second)
			checkCounting(t, lines, 0)
		})
	}
}

// TestWarningFree compiles every program in testdata/ with -Werror.
func TestWarningFree(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	srcs, _ := filepath.Glob(filepath.Join(root, "testdata", "*.c"))
	if len(srcs) == 0 {
		t.Fatal("no testdata/*.c")
	}
	for _, src := range srcs {
		text, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"}, cflags(text)...)
		if msg, err := exec.Command("gcc", append(args, src)...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", filepath.Base(src), err, msg)
		}
	}
}

// The protocol smoke tests below run each program without any checkpoint:
// create the trigger, expect OK.

func trigger(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cmd.Dir, "trigger"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func expectExit(t *testing.T, cmd *exec.Cmd, out string, code int, substr string) {
	t.Helper()
	err := cmd.Wait()
	data, _ := os.ReadFile(out)
	if cmd.ProcessState.ExitCode() != code || !strings.Contains(string(data), substr) {
		t.Fatalf("exit: %v, want code %d and %q in output:\n%s", err, code, substr, data)
	}
}

func TestHeapProtocol(t *testing.T) {
	cmd, out := start(t, BuildC(t, "heap", false), "16", "7", "trigger")
	WaitForFile(t, out, "ready\n", 10*time.Second)
	trigger(t, cmd)
	expectExit(t, cmd, out, 0, "ready\nOK\n")
}

func TestMapfileProtocol(t *testing.T) {
	bin := BuildC(t, "mapfile", false)
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, out := start(t, bin, file, "trigger")
	WaitForFile(t, out, "ready\n", 10*time.Second)
	trigger(t, cmd)
	expectExit(t, cmd, out, 0, "ready\nOK\n")
}

func TestAVXProtocol(t *testing.T) {
	bin := BuildC(t, "avx", false)
	for _, tc := range []struct {
		args   []string
		code   int
		substr string
	}{
		{[]string{"trigger"}, 0, "ready\nOK\n"},
		{[]string{"trigger", "avx"}, 0, "ready\nOK\n"},
		{[]string{"trigger", "avx", "1"}, 1, "FAIL ymm13 byte 16"},
		{[]string{"trigger", "auto", "6"}, 1, "FAIL mxcsr"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			cmd, out := start(t, bin, tc.args...)
			WaitForFile(t, out, "ready\n", 10*time.Second)
			if data, _ := os.ReadFile(out); strings.Contains(string(data), "SKIP") {
				t.Skip(string(data))
			}
			trigger(t, cmd)
			expectExit(t, cmd, out, tc.code, tc.substr)
		})
	}
}

func TestUnsupportedProtocol(t *testing.T) {
	_, out := start(t, BuildC(t, "unsupported", false))
	lines := WaitForLines(t, out, 4, 5*time.Second)
	if lines[0] != "ready" {
		t.Fatalf("first line %q, want ready", lines[0])
	}
	checkCounting(t, lines[1:], 0)
}

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuilds()
	os.Exit(code)
}
