package series

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestNumber(t *testing.T) {
	tests := []struct {
		name string
		n    int
		ok   bool
	}{
		{"1", 1, true}, {"42", 42, true}, {"0", 0, false}, {"01", 0, false}, {"-1", 0, false},
		{"+1", 0, false}, {"latest", 0, false}, {"", 0, false}, {"1a", 0, false}, {"1234567890", 0, false},
	}
	for _, tc := range tests {
		n, ok := number(tc.name)
		if n != tc.n || ok != tc.ok {
			t.Errorf("number(%q) = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

// checkpoint stands for a dump: it creates the directory Next names.
func checkpoint(t *testing.T, s *Series) int {
	t.Helper()
	n, dir := s.Next()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return n
}

func latest(t *testing.T, dir string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join(dir, Latest))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSeries takes checkpoints keeping 3: latest names the newest done,
// a skipped one leaves it, the oldest go, and a series opened again
// numbers on from the highest.
func TestSeries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	s, err := Open(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		n := checkpoint(t, s)
		if n != i {
			t.Fatalf("checkpoint %d numbered %d", i, n)
		}
		if err := s.Done(n); err != nil {
			t.Fatal(err)
		}
		if l := latest(t, dir); l != filepath.Base(dirOf(s, n)) {
			t.Fatalf("latest -> %s after checkpoint %d", l, n)
		}
	}
	n, _ := s.Next()
	s.Skip(n) // checkpoint 6 failed: the dump removed its directory
	if l := latest(t, dir); l != "5" {
		t.Fatalf("latest -> %s after a failed checkpoint, want 5", l)
	}
	nums, err := s.Numbers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nums, []int{3, 4, 5}) {
		t.Fatalf("kept %v, want [3 4 5]", nums)
	}
	os.WriteFile(filepath.Join(dir, "notes"), nil, 0o600) // other names are left alone
	s2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Next(); n != 6 {
		t.Fatalf("reopened series numbers on at %d, want 6", n)
	}
	n = checkpoint(t, s2)
	if err := s2.Done(n); err != nil {
		t.Fatal(err)
	}
	if nums, _ := s2.Numbers(); !slices.Equal(nums, []int{3, 4, 5, 6}) {
		t.Fatalf("keep 0 kept %v, want all", nums)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes")); err != nil {
		t.Fatalf("a file of another name was touched: %v", err)
	}
	if err := s2.Done(9); err == nil {
		t.Fatal("Done of a checkpoint Next did not give: no error")
	}
}

func dirOf(s *Series, n int) string { return filepath.Join(s.dir, strconv.Itoa(n)) }

// TestOpenRefuses: a file, and a directory others may write to.
func TestOpenRefuses(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	for _, dir := range []string{file, open} {
		if _, err := Open(dir, 1); err == nil {
			t.Errorf("Open(%s): no error", dir)
		}
	}
	if _, err := Open(filepath.Join(base, "new"), -1); err == nil {
		t.Error("Open with keep -1: no error")
	}
}
