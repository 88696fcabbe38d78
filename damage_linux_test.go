package rtcr_test

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestDamagedImages damages a good image in each way a disk, a transfer or
// a user can, and checks restore refuses it with the right error before
// any process exists.
func TestDamagedImages(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	good := tg.dump(false)
	c, err := image.ReadManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	pages := c.Processes[0].PageFile

	edit := func(name string, f func(b []byte) []byte) func(dir string) {
		return func(dir string) {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip := func(off func(n int) int) func(b []byte) []byte {
		return func(b []byte) []byte { b[off(len(b))] ^= 0x10; return b }
	}
	tests := []struct {
		name   string
		damage func(dir string)
		want   error
	}{
		{"manifest truncated in header", edit(image.ManifestName, func(b []byte) []byte { return b[:20] }), image.ErrCorrupt},
		{"manifest truncated in payload", edit(image.ManifestName, func(b []byte) []byte { return b[:len(b)/2] }), image.ErrCorrupt},
		{"manifest empty", edit(image.ManifestName, func(b []byte) []byte { return nil }), image.ErrCorrupt},
		{"manifest bit flip in payload", edit(image.ManifestName, flip(func(n int) int { return n - 10 })), image.ErrCorrupt},
		{"manifest bit flip in checksum", edit(image.ManifestName, flip(func(n int) int { return 30 })), image.ErrCorrupt},
		{"manifest wrong version", edit(image.ManifestName, func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[8:], 99)
			return b
		}), image.ErrVersion},
		{"manifest foreign file", edit(image.ManifestName, func(b []byte) []byte {
			r := rand.New(rand.NewSource(1))
			r.Read(b)
			return b
		}), image.ErrNotImage},
		{"manifest missing", func(dir string) { _ = os.Remove(filepath.Join(dir, image.ManifestName)) }, os.ErrNotExist},
		{"pages truncated", edit(pages, func(b []byte) []byte { return b[:len(b)-4096] }), image.ErrCorrupt},
		{"pages extra bytes", edit(pages, func(b []byte) []byte { return append(b, 0) }), image.ErrCorrupt},
		{"pages bit flip", edit(pages, flip(func(n int) int { return n / 2 })), image.ErrCorrupt},
		{"pages missing", func(dir string) { _ = os.Remove(filepath.Join(dir, pages)) }, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, good)
			tc.damage(dir)
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore of a damaged image: error %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if !pidFree(tg.pid) {
				t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
			}
		})
	}
	// The undamaged image still restores.
	tg.restore(good)
	testutil.WaitForLines(t, tg.out, len(testutil.WaitForLines(t, tg.out, 0, time.Second))+5, 10*time.Second)
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "img")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}
