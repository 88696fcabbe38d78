package mem_test

// An external test package: testutil imports mem (for SyscallAddr), so an
// internal test of mem importing testutil would be an import cycle.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestRoundTrip dumps the address space of a target with mem.Dump and
// mem.DumpMM, restores it into a stub with mem.Restore and mem.RestoreMM,
// then checks
//   - every saved page: the stub's memory holds the page file's bytes;
//   - the layout: mem.Dump of the stub gives the same VMAs (addresses,
//     protection, kind, sharing, grows-down, name, file identity) with the
//     same saved page runs, and the same vdso bytes;
//   - the mm fields: mem.DumpMM of the stub gives the same MM (which is
//     also what makes the stub's VMAs [heap] and [stack] again).
//
// Targets: testdata/heap.c with 8 MiB of patterned malloc memory (plus brk
// heap, stack, .data, .bss), dynamic and static, and testdata/mapfile.c
// (private file mapping with copied-on-write pages, shared file mapping,
// shared and private anonymous memory).
//
// Exceptions: the stub's scratch area (at testutil.StubScratch, where no
// target maps anything) is left out of the stub's dump; [vsyscall] is never
// part of a dump. Page-file offsets are not compared: the stub's dump
// writes the scratch area's pages too, in address order.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name   string
		prog   string
		static bool
		args   func(t *testing.T) []string
		// kinds are VMA kinds the target's dump must have; saved is the
		// least number of bytes saved in one VMA of the first kind.
		kinds []string
		saved uint64
	}{
		{"heap", "heap", false, heapArgs, []string{image.KindAnon, image.KindHeap, image.KindStack, image.KindVDSO, image.KindFile}, 8 << 20},
		{"heap-static", "heap", true, heapArgs, []string{image.KindAnon, image.KindHeap, image.KindStack, image.KindVDSO, image.KindFile}, 8 << 20},
		{"mapfile", "mapfile", false, mapfileArgs, []string{image.KindFile, image.KindSharedAnon, image.KindAnon, image.KindStack, image.KindVDSO}, image.PageSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := testutil.BuildC(t, tc.prog, tc.static)
			tg := testutil.StartTarget(t, bin, "ready\n", tc.args(t)...)
			roundTrip(t, tg, tc.kinds, tc.saved)
		})
	}
}

func heapArgs(*testing.T) []string { return []string{"8", "1", "trigger"} }

// mapfileArgs creates the data file mapfile.c maps: 64 KiB, byte i is i*7.
func mapfileArgs(t *testing.T) []string {
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{file, "trigger"}
}

func roundTrip(t *testing.T, tg *testutil.Target, kinds []string, saved uint64) {
	exe, err := procfs.ReadExe(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pw := image.NewPageWriter(&buf)
	p := &image.Process{Pid: tg.Pid, Exe: exe, PageFile: image.PageFileName("0123456789abcdef", tg.Pid)}
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		var err error
		if p.MM, err = mem.DumpMM(r); err != nil {
			t.Errorf("dump mm of target: %v", err)
			return
		}
		// As the real dump does: unmap the scratch area before reading
		// memory, so that it is not part of the image.
		if err := r.CloseRemote(); err != nil {
			t.Errorf("close remote: %v", err)
			return
		}
		if p.VMAs, p.VDSO, err = mem.Dump(tg.Pid, pw, nil, nil, nil); err != nil {
			t.Errorf("dump memory of target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
	pages := buf.Bytes()
	if err := image.VerifyPages(pages, p.PageChecksums, p.PageFile); err != nil {
		t.Fatal(err)
	}
	checkTarget(t, p, kinds, saved)
	if err := mem.CheckVDSO(p); err != nil {
		t.Fatal(err)
	}
	if err := mem.CheckFiles(p); err != nil {
		t.Fatal(err)
	}

	var gotVMAs []image.VMA
	var gotVDSO []byte
	var gotMM image.MM
	testutil.InStub(t, func(r *ptrace.Remote) {
		open, err := files.NewOpener(r, p, nil)
		if err != nil {
			t.Errorf("check mapped files: %v", err)
			return
		}
		if err := mem.Restore(r, p, mem.PageFiles{p.Pid: {pages}}, nil, open.Open, nil); err != nil {
			t.Errorf("restore memory: %v", err)
			return
		}
		if err := mem.RestoreMM(r, p, open.Open); err != nil {
			t.Errorf("restore mm: %v", err)
			return
		}
		checkPages(t, r.Pid, p, pages)
		if gotMM, err = mem.DumpMM(r); err != nil {
			t.Errorf("dump mm of stub: %v", err)
			return
		}
		if gotVMAs, gotVDSO, err = mem.Dump(r.Pid, image.NewPageWriter(new(bytes.Buffer)), nil, nil, nil); err != nil {
			t.Errorf("dump memory of stub: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	var stubVMAs []image.VMA
	for _, v := range gotVMAs {
		if v.Start == testutil.StubScratch {
			continue // the stub's scratch area, not restored memory
		}
		stubVMAs = append(stubVMAs, v)
	}
	if want, got := layout(p.VMAs), layout(stubVMAs); want != got {
		t.Errorf("layout after the round trip:\n%s\nwant\n%s", got, want)
	}
	if !bytes.Equal(gotVDSO, p.VDSO) {
		t.Errorf("vdso of the stub differs from the target's (%d bytes, want %d)", len(gotVDSO), len(p.VDSO))
	}
	if !reflect.DeepEqual(gotMM, p.MM) {
		t.Errorf("mm after the round trip:\n got %+v\nwant %+v", gotMM, p.MM)
	}
}

// checkTarget makes sure the target's dump has VMAs of the given kinds and
// one VMA of the first kind with at least saved bytes saved, so the round
// trip compares what the test means to.
func checkTarget(t *testing.T, p *image.Process, kinds []string, saved uint64) {
	t.Helper()
	have := map[string]int{}
	most := uint64(0)
	for _, v := range p.VMAs {
		have[v.Kind]++
		var n uint64
		for _, run := range v.Pages {
			n += run.Count * image.PageSize
		}
		if v.Kind == kinds[0] {
			most = max(most, n)
		}
	}
	for _, k := range kinds {
		if have[k] == 0 {
			t.Errorf("target dump has no %s VMA:\n%s", k, layout(p.VMAs))
		}
	}
	if most < saved {
		t.Errorf("target dump has no %s VMA with %d bytes saved (most: %d):\n%s", kinds[0], saved, most, layout(p.VMAs))
	}
}

// checkPages compares every saved page run with the stub's memory.
func checkPages(t *testing.T, pid int, p *image.Process, pages []byte) {
	t.Helper()
	for _, v := range p.VMAs {
		for _, run := range v.Pages {
			n := int64(run.Count * image.PageSize)
			want := pages[run.FileOff : run.FileOff+n]
			got := make([]byte, n)
			if err := ptrace.ReadMem(pid, run.Addr, got); err != nil {
				t.Errorf("VMA %#x-%#x %s: %v", v.Start, v.End, v.Name, err)
				continue
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Errorf("VMA %#x-%#x %s: byte at %#x is %#02x, page file has %#02x",
					v.Start, v.End, v.Name, run.Addr+uint64(i), got[i], want[i])
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// layout renders the VMAs with every field but the page-file offsets.
func layout(vmas []image.VMA) string {
	var b strings.Builder
	for _, v := range vmas {
		fmt.Fprintf(&b, "\t%#x-%#x prot=%d shared=%v gd=%v %s %q", v.Start, v.End, v.Prot, v.Shared, v.GrowsDown, v.Kind, v.Name)
		if v.Kind == image.KindFile {
			fmt.Fprintf(&b, " file=%s@%#x dev=%#x ino=%d size=%d mtime=%d", v.Path, v.Offset, v.Dev, v.Inode, v.FileSize, v.FileMtime)
		}
		for _, run := range v.Pages {
			fmt.Fprintf(&b, " [%#x+%d]", run.Addr, run.Count)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
