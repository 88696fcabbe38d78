package testutil

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildGo builds the Go program in testdata/<name> (a main package of this
// module) once per test binary and returns the executable's path.
func BuildGo(t testing.TB, name string) string {
	t.Helper()
	dir, r := buildSlot(t, buildKey{"go/" + name, false})
	r.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			r.err = err.Error()
			return
		}
		out := filepath.Join(dir, "go-"+name)
		cmd := exec.Command("go", "build", "-o", out, "./testdata/"+name)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = err.Error() + "\n" + string(b)
			return
		}
		r.path = out
	})
	if r.err != "" {
		t.Fatalf("go build ./testdata/%s: %s", name, r.err)
	}
	return r.path
}
