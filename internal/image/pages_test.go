package image

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testPages returns n pseudo-random bytes.
func testPages(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestPageFileName(t *testing.T) {
	got := PageFileName("0123456789abcdef", 4242)
	if got != "pages-0123456789abcdef-4242.img" || !genPageRe.MatchString(got) {
		t.Errorf("PageFileName = %q", got)
	}
}

func TestPageWriterBoundaries(t *testing.T) {
	data := testPages(PageChunkSize*5 + PageChunkSize/2)

	var one bytes.Buffer
	big := NewPageWriter(&one)
	if n, err := big.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	want := big.Checksums()
	if len(want) != 6 {
		t.Fatalf("%d checksums, want 6", len(want))
	}
	for i, s := range want {
		chunk := data[i*PageChunkSize : min((i+1)*PageChunkSize, len(data))]
		if c := crc32.Checksum(chunk, crc32.MakeTable(crc32.Castagnoli)); c != s {
			t.Errorf("chunk %d: checksum %#x, want %#x", i, s, c)
		}
	}

	sizes := [][]int{
		{1, 4095, 7, PageChunkSize + 3, PageChunkSize - 11},
		{PageChunkSize},
		{PageChunkSize - 1, 2},
		{3 * PageChunkSize, 12345},
		{PageSize},
	}
	for _, sz := range sizes {
		t.Run(strconv.Itoa(sz[0]), func(t *testing.T) {
			var buf bytes.Buffer
			pw := NewPageWriter(&buf)
			rest, i := data, 0
			for len(rest) > 0 {
				k := min(sz[i%len(sz)], len(rest))
				if n, err := pw.Write(rest[:k]); n != k || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				rest, i = rest[k:], i+1
			}
			if pw.Offset() != int64(len(data)) {
				t.Errorf("Offset() = %d, want %d", pw.Offset(), len(data))
			}
			if !bytes.Equal(buf.Bytes(), data) {
				t.Error("written bytes differ")
			}
			if got := pw.Checksums(); !slicesEqual(got, want) {
				t.Errorf("Checksums() = %x, want %x", got, want)
			}
		})
	}
}

func slicesEqual(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPageWriterExactChunks(t *testing.T) {
	pw := NewPageWriter(new(bytes.Buffer))
	if got := pw.Checksums(); len(got) != 0 {
		t.Errorf("empty writer: %d checksums", len(got))
	}
	pw.Write(make([]byte, 2*PageChunkSize))
	if got := pw.Checksums(); len(got) != 2 {
		t.Errorf("2 full chunks: %d checksums", len(got))
	}
}

func TestVerifyPages(t *testing.T) {
	data := testPages(PageChunkSize*5 + PageChunkSize/2)
	pw := NewPageWriter(new(bytes.Buffer))
	pw.Write(data)
	sums := pw.Checksums()
	if err := VerifyPages(data, sums, "pages-1.img"); err != nil {
		t.Fatalf("VerifyPages(good) = %v", err)
	}

	bad := bytes.Clone(data)
	bad[3*PageChunkSize+12345] ^= 0x20
	err := VerifyPages(bad, sums, "pages-1.img")
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("VerifyPages(flipped) = %v, want ErrCorrupt", err)
	}
	for _, s := range []string{"pages-1.img", "offset " + strconv.Itoa(3*PageChunkSize)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}

	for _, n := range []int{0, 5, 7} {
		s := make([]uint32, n)
		copy(s, sums)
		if err := VerifyPages(data, s, "p"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("VerifyPages with %d sums = %v, want ErrCorrupt", n, err)
		}
	}
	if err := VerifyPages(nil, nil, "p"); err != nil {
		t.Errorf("VerifyPages(empty) = %v", err)
	}
}

// writePageFile writes data as the page file of a process and returns it.
func writePageFile(t *testing.T, dir string, data []byte) *Process {
	t.Helper()
	p := &Process{Pid: 7, PageFile: PageFileName("0123456789abcdef", 7), PageFileSize: int64(len(data))}
	pw := NewPageWriter(new(bytes.Buffer))
	pw.Write(data)
	p.PageChecksums = pw.Checksums()
	if err := os.WriteFile(filepath.Join(dir, p.PageFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenPages(t *testing.T) {
	data := testPages(2*PageChunkSize + 3*PageSize)

	t.Run("good", func(t *testing.T) {
		dir := t.TempDir()
		p := writePageFile(t, dir, data)
		got, closeFn, err := OpenPages(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Error("mapped data differs")
		}
		if err := closeFn(); err != nil {
			t.Error(err)
		}
		if err := closeFn(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})

	tests := []struct {
		name   string
		mutate func(p *Process)
		want   error
		msg    string
	}{
		{"file too short", func(p *Process) { p.PageFileSize += PageSize }, ErrCorrupt, "truncated"},
		{"file too long", func(p *Process) { p.PageFileSize -= PageSize }, ErrCorrupt, "has extra bytes"},
		{"bad checksum", func(p *Process) { p.PageChecksums[1]++ }, ErrCorrupt, "offset " + strconv.Itoa(PageChunkSize)},
		{"checksum count", func(p *Process) { p.PageChecksums = p.PageChecksums[:2] }, ErrCorrupt, "checksums"},
		{"missing", func(p *Process) { p.PageFile = "pages-8.img" }, fs.ErrNotExist, "pages-8.img"},
		{"not plain", func(p *Process) { p.PageFile = "../x" }, ErrCorrupt, "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writePageFile(t, dir, data)
			tt.mutate(p)
			got, closeFn, err := OpenPages(dir, p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenPages = %v, want %v", err, tt.want)
			}
			if got != nil || closeFn != nil {
				t.Error("OpenPages returned data or close func with an error")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}

	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		p := writePageFile(t, dir, nil)
		got, closeFn, err := OpenPages(dir, p)
		if err != nil || got != nil {
			t.Fatalf("OpenPages(empty) = %v, %v", got, err)
		}
		if err := closeFn(); err != nil {
			t.Error(err)
		}
		// No page file at all is fine when there are no pages.
		got, closeFn, err = OpenPages(dir, &Process{Pid: 9})
		if err != nil || got != nil || closeFn() != nil {
			t.Fatalf("OpenPages(no page file) = %v, %v", got, err)
		}
	})
}

func BenchmarkVerifyPages(b *testing.B) {
	data := testPages(16 * PageChunkSize)
	pw := NewPageWriter(new(bytes.Buffer))
	pw.Write(data)
	sums := pw.Checksums()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := VerifyPages(data, sums, "p"); err != nil {
			b.Fatal(err)
		}
	}
}
