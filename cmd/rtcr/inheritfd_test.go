package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rtcr/rtcr"
)

// TestInheritFDBadValues: a malformed --inherit-fd is a usage error: one
// line on stderr, exit 2, nothing done.
func TestInheritFDBadValues(t *testing.T) {
	for _, tc := range []struct{ val, want string }{
		{"5", "want FD:ID"},
		{"pipe:[12]", "is not a number"},
		{"-1:pipe:[12]", "is not a number"},
		{"+5:pipe:[12]", "is not a number"},
		{"05:pipe:[12]", "is not a number"},
		{"fd[5:pipe:[12]", "want fd[N]:ID"},
		{"fd[x]:pipe:[12]", "is not a number"},
		{"5:", "no ID after the fd"},
		{"5:pipe :[12]", "space or control character"},
		{"99999999999999999999:pipe:[12]", "is not a number"},
	} {
		t.Run(tc.val, func(t *testing.T) {
			stdout, stderr, code := runRtcr(t, "restore", "--dir", t.TempDir(), "--inherit-fd", tc.val)
			if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "inherit-fd") || stdout != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit %d and one line mentioning %q", code, stderr, stdout, exitUsage, tc.want)
			}
		})
	}
}

// TestParseInheritFD: both forms, repeated.
func TestParseInheritFD(t *testing.T) {
	var f inheritFlag
	for _, v := range []string{"5:pipe:[12]", "fd[0]:socket:[7]"} {
		if err := f.Set(v); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	want := []rtcr.InheritFD{{Fd: 5, ID: "pipe:[12]"}, {Fd: 0, ID: "socket:[7]"}}
	if len(f) != 2 || f[0] != want[0] || f[1] != want[1] {
		t.Fatalf("got %v, want %v", f, want)
	}
	if s := f.String(); s != "5:pipe:[12],0:socket:[7]" {
		t.Errorf("String() = %q", s)
	}
}

// TestInheritFDNotGiven: an --inherit-fd fd rtcr was not started with is
// refused with one line (exit 2) before the image is read, even when
// rtcr itself has a file open at that number (the Go runtime keeps cgroup
// files open); one it was given is accepted (the restore then fails on
// the empty image directory instead).
func TestInheritFDNotGiven(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"3", "4", "5", "200"} {
		_, stderr, code := runRtcr(t, "restore", "--dir", dir, "--inherit-fd", n+":pipe:[1]")
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "rtcr's fd "+n+" is not open") {
			t.Errorf("fd %s not given: exit %d, stderr %q", n, code, stderr)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(os.Args[0], "restore", "--dir", dir, "--inherit-fd", "3:pipe:[1]")
	cmd.Env = append(os.Environ(), "RTCR_AS_MAIN=1")
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "no image in") {
		t.Errorf("fd 3 given: %v, %q; want exit 1 for the empty directory", err, out)
	}
}
