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
	return goBuild(t, "./testdata/"+name, "go-"+name)
}

// BuildRtcr builds the rtcr command once per test binary and returns its
// path.
func BuildRtcr(t testing.TB) string {
	t.Helper()
	return goBuild(t, "./cmd/rtcr", "rtcr")
}

// goBuild builds package pkg of this module into the build directory as
// out, once per test binary.
func goBuild(t testing.TB, pkg, out string) string {
	t.Helper()
	dir, r := buildSlot(t, buildKey{"go:" + pkg, false})
	r.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			r.err = err.Error()
			return
		}
		path := filepath.Join(dir, out)
		cmd := exec.Command("go", "build", "-o", path, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = err.Error() + "\n" + string(b)
			return
		}
		r.path = path
	})
	if r.err != "" {
		t.Fatalf("go build %s: %s", pkg, r.err)
	}
	return r.path
}
