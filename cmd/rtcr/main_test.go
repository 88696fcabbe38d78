package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMain lets the test binary act as rtcr when RTCR_AS_MAIN is set, so
// tests run the real command with its real exit status and output.
func TestMain(m *testing.M) {
	if os.Getenv("RTCR_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(testutil.Main(m))
}

func runRtcr(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RTCR_AS_MAIN=1")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestBadArguments: every mistake gives one line on stderr and exit 2.
func TestBadArguments(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"dump"}, "--pid is required"},
		{[]string{"dump", "--pid", "12"}, "--dir or --page-server is required"},
		{[]string{"dump", "--pid", "12", "--page-server", "h:1"}, "--page-server and --token-file go together"},
		{[]string{"serve", "--dir", "/tmp/x"}, "--listen, --dir and --token-file are required"},
		{[]string{"migrate", "--pid", "12"}, "--pid, --to and --token-file are required"},
		{[]string{"migrate", "--pid", "12", "--to", "h:1", "--token-file", "T", "--action-script", "move.sh"}, "--action-script needs an absolute path"},
		{[]string{"serve", "--listen", ":1", "--dir", "/tmp/x", "--token-file", "T", "--action-script", "move.sh"}, "--action-script needs an absolute path"},
		{[]string{"dump", "-t", "abc", "-D", "/tmp/x"}, "invalid value"},
		{[]string{"dump", "-t", "-5", "-D", "/tmp/x"}, "must be positive"},
		{[]string{"dump", "--pid", "1", "--dir", "/tmp/x", "extra"}, "unexpected argument"},
		{[]string{"dump", "--no-such-flag"}, "not defined"},
		{[]string{"dump", "-t", "1", "-D", "/tmp/x", "-vq"}, "not defined: -vq"},
		{[]string{"restore", "-D", "/tmp/x", "-v=high"}, "want 0 to 4"},
		{[]string{"restore", "-D", "/tmp/x", "-o"}, "needs an argument"},
		{[]string{"restore"}, "--dir is required"},
		{[]string{"inspect"}, "--dir is required"},
		{[]string{"bench", "--size", "12Q"}, "--size"},
		{[]string{"bench", "--runs", "0"}, "--runs"},
		{[]string{"bench", "--incremental", "101"}, "--incremental must be"},
		{[]string{"dump", "-t", "1", "-D", "/tmp/x", "--track-mem"}, "--track-mem needs --leave-running"},
		{[]string{"check", "extra"}, "unexpected argument"},
		{[]string{"run", "--every", "0s", "--dir", "/tmp/x", "--", "true"}, "--every must be > 0"},
		{[]string{"run", "--every", "-1s", "--dir", "/tmp/x", "--", "true"}, "--every must be > 0"},
		{[]string{"run", "--every", "1s", "--", "true"}, "--every and --dir go together"},
		{[]string{"run", "--every", "1s", "--dir", "/tmp/x", "--keep", "-1", "--", "true"}, "--keep must be >= 0"},
		{[]string{"run", "--keep", "2", "--", "true"}, "--keep, --no-incremental and --max-freeze go with --every"},
		{[]string{"run", "--no-incremental", "--", "true"}, "--keep, --no-incremental and --max-freeze go with --every"},
		{[]string{"run", "--max-freeze", "5ms", "--", "true"}, "--keep, --no-incremental and --max-freeze go with --every"},
		{[]string{"run", "--every", "1s", "--dir", "/tmp/x", "--max-freeze", "0s", "--", "true"}, "--max-freeze must be > 0"},
		{[]string{"run", "--every", "1s", "--dir", "/tmp/x", "--max-freeze", "-5ms", "--", "true"}, "--max-freeze must be > 0"},
		{[]string{"run", "--every", "1s", "--dir", "/tmp/x", "--max-freeze", "5ms", "--no-incremental", "--", "true"}, "--max-freeze needs incremental"},
		{[]string{"dump", "-t", "1", "-D", "/tmp/x", "--max-freeze", "5ms"}, "--max-freeze must be > 0 and goes with --parent"},
		{[]string{"dump", "-t", "1", "-D", "/tmp/x", "--parent", "../a", "--max-freeze", "0s"}, "--max-freeze must be > 0 and goes with --parent"},
		{[]string{"run", "--dir", "/tmp/x", "--", "true"}, "--every and --dir go together"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runRtcr(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if n := strings.Count(stderr, "\n"); n != 1 {
				t.Errorf("stderr has %d lines, want 1:\n%s", n, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("unexpected stdout %q", stdout)
			}
		})
	}
}

// TestHelp: --help of every command prints its options and exits 0.
func TestHelp(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			stdout, _, code := runRtcr(t, c.name, "--help")
			if code != 0 || !strings.Contains(stdout, "usage: rtcr "+c.name) {
				t.Fatalf("exit %d, output:\n%s", code, stdout)
			}
		})
	}
	stdout, _, code := runRtcr(t, "--help")
	if code != 0 || !strings.Contains(stdout, "commands:") {
		t.Fatalf("rtcr --help: exit %d, output:\n%s", code, stdout)
	}
}

// TestRuntimeErrors: failures that are not usage errors exit 1 with a
// message naming what failed.
func TestRuntimeErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"restore", "-D", dir}, "no image in " + dir},
		{[]string{"inspect", "-D", dir + "/missing"}, "no image in"},
		{[]string{"dump", "-t", "999999999", "-D", dir}, "no such process"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := runRtcr(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit 1 mentioning %q", code, stderr, tc.want)
			}
		})
	}
}
