package files

import (
	"os"
	"os/exec"
	"testing"
)

// BenchmarkNewTree scans the fds of 32 processes holding the ends of two
// pipes and a file at fds 0-2, the shape of the bench's 32-process tree:
// NewTree runs inside a tree dump's freeze.
func BenchmarkNewTree(b *testing.B) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Open("/dev/null")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var pids []int
	for range 32 {
		cmd := exec.Command("sleep", "1000")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = r, w, f
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		pids = append(pids, cmd.Process.Pid)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := NewTree(pids); err != nil {
			b.Fatal(err)
		}
	}
}
