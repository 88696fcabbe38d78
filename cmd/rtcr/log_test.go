package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestLogFlagParsing: CRIU's spellings of the level (-v4, -vvv, bare -v)
// and of the log file (-o) parse, and -v4 after "--" belongs to the program.
func TestLogFlagParsing(t *testing.T) {
	tests := []struct {
		args    []string
		file    string
		level   slog.Level
		enabled bool // a logger is made
		rest    []string
		err     string
	}{
		{args: nil},
		{args: []string{"-v"}, level: slog.LevelInfo, enabled: true},
		{args: []string{"-v0"}, level: slog.LevelError, enabled: true},
		{args: []string{"-v1"}, level: slog.LevelError, enabled: true},
		{args: []string{"-v2"}, level: slog.LevelWarn, enabled: true},
		{args: []string{"-v3"}, level: slog.LevelInfo, enabled: true},
		{args: []string{"-v4"}, level: slog.LevelDebug, enabled: true},
		{args: []string{"-v9"}, level: slog.LevelDebug, enabled: true},
		{args: []string{"-vv"}, level: slog.LevelWarn, enabled: true},
		{args: []string{"-vvvv"}, level: slog.LevelDebug, enabled: true},
		{args: []string{"-v=2"}, level: slog.LevelWarn, enabled: true},
		{args: []string{"-o", "x.log"}, file: "x.log", level: slog.LevelInfo, enabled: true},
		{args: []string{"--log-file=x.log", "-v4"}, file: "x.log", level: slog.LevelDebug, enabled: true},
		{args: []string{"-D", "-v4", "-v1"}, level: slog.LevelError, enabled: true}, // -v4 is --dir's value
		{args: []string{"-R", "-v4", "--", "-v2"}, level: slog.LevelDebug, enabled: true, rest: []string{"-v2"}},
		{args: []string{"-v", "cmd", "-v4"}, level: slog.LevelInfo, enabled: true, rest: []string{"cmd", "-v4"}},
		{args: []string{"-vx"}, err: "not defined: -vx"},
		{args: []string{"-v=-1"}, err: "want 0 to 4"},
		{args: []string{"-v=high"}, err: "want 0 to 4"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := newFlags("test", "")
			var dir string
			var leave bool
			fs.StringVar(&dir, "D", "", "")
			fs.BoolVar(&leave, "R", false, "")
			var lf logFlags
			lf.add(fs)
			err := fs.Parse(criuArgs(fs, tc.args))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if lf.file != tc.file || lf.level.slogLevel() != tc.level || (lf.file != "" || lf.level.set) != tc.enabled {
				t.Errorf("file %q level %v set %v; want %q %v enabled %v", lf.file, lf.level.slogLevel(), lf.level.set, tc.file, tc.level, tc.enabled)
			}
			if fmt.Sprint(fs.Args()) != fmt.Sprint(tc.rest) && !(len(fs.Args()) == 0 && len(tc.rest) == 0) {
				t.Errorf("arguments left %q, want %q", fs.Args(), tc.rest)
			}
		})
	}
}

// TestFailureNamesLog: a failed dump or restore with --log-file/-o ends its
// one-line error with the log's path; the log (mode 0600) starts with
// rtcr's version, arguments, kernel and pid and holds the error.
func TestFailureNamesLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "rtcr.log")
	tests := [][]string{
		{"dump", "-t", "999999999", "-D", dir + "/img", "-o", log, "-v4"},
		{"restore", "-D", dir, "--log-file", log},
	}
	for _, args := range tests {
		t.Run(args[0], func(t *testing.T) {
			_ = os.Remove(log)
			_, stderr, code := runRtcr(t, args...)
			if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, " (log: "+log+")\n") {
				t.Fatalf("exit %d, stderr %q; want exit 1, one line ending with (log: %s)", code, stderr, log)
			}
			st, err := os.Stat(log)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("log file: %v, mode %v; want 0600", err, st.Mode())
			}
			b, _ := os.ReadFile(log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			head := regexp.MustCompile(`^time=\S+ level=INFO msg=rtcr version=.* args="\[` + args[0] + ` .*\]" kernel=\S+ rtcr_pid=\d+$`)
			if !head.MatchString(lines[0]) || !strings.Contains(lines[len(lines)-1], "level=ERROR msg=failed err=") {
				t.Fatalf("log:\n%s\nwant a first line with version, args, kernel, pid and a last one with the error", b)
			}
		})
	}
	if _, stderr, code := runRtcr(t, "dump", "-t", "1", "-D", dir, "-o", dir+"/no/such/dir/log"); code != 1 || !strings.Contains(stderr, "log file") {
		t.Fatalf("log file in a missing directory: exit %d, stderr %q", code, stderr)
	}
	// Without a log file the error stays as it was.
	if _, stderr, _ := runRtcr(t, "dump", "-t", "999999999", "-D", dir); strings.Contains(stderr, "(log:") {
		t.Fatalf("stderr %q names a log without --log-file", stderr)
	}
}

// TestLogDumpRestore runs rtcr dump and rtcr restore of a counter with
// -o and -v4: both logs hold each major step with the pid and a duration,
// and the debug details; the counter continues.
func TestLogDumpRestore(t *testing.T) {
	requireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "counter", false), "")
	testutil.WaitForLines(t, tg.Out, 5, 10*time.Second)
	dir := t.TempDir()
	dlog, rlog := filepath.Join(dir, "dump.log"), filepath.Join(dir, "restore.log")
	if _, stderr, code := runRtcr(t, "dump", "-t", fmt.Sprint(tg.Pid), "-D", dir+"/img", "-o", dlog, "-v4"); code != 0 {
		t.Fatalf("dump: exit %d: %s", code, stderr)
	}
	_ = tg.Cmd.Wait() // the dump killed it: free its pid
	if _, stderr, code := runRtcr(t, "restore", "-D", dir+"/img", "-o", rlog, "-v4"); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { _ = unix.Kill(tg.Pid, unix.SIGKILL) })
	n := len(testutil.WaitForLines(t, tg.Out, 0, time.Second))
	testutil.WaitForLines(t, tg.Out, n+5, 10*time.Second)
	for _, c := range []struct {
		log   string
		steps []string
	}{
		{dlog, []string{"freeze", "fds", "attributes", "signal actions", "credentials", "timers", "mm", "threads", "memory", "manifest", "release"}},
		{rlog, []string{"read manifest", "verify pages", "preflight", "create process", "memory", "mm and exe link", "fds",
			"attributes", "signal actions", "threads", "thread state", "timers", "credentials", "registers", "detach"}},
	} {
		b, err := os.ReadFile(c.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.steps {
			if s != strings.TrimSpace(s) || strings.Contains(s, " ") {
				s = `"` + s + `"`
			}
			re := regexp.MustCompile(`(?m)level=INFO msg=` + regexp.QuoteMeta(s) + fmt.Sprintf(` pid=%d took=[0-9.]+(ns|µs|ms|s)( |$)`, tg.Pid))
			if !re.Match(b) {
				t.Errorf("%s: no step %s with pid %d and a duration", c.log, s, tg.Pid)
			}
		}
		for _, d := range []string{"level=DEBUG msg=fd ", "level=DEBUG msg=thread ", "level=DEBUG msg=vma "} {
			if !strings.Contains(string(b), d) {
				t.Errorf("%s: no %q line", c.log, d)
			}
		}
		if t.Failed() {
			t.Fatalf("%s:\n%s", c.log, b)
		}
	}
}
