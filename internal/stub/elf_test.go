package stub

import (
	"bytes"
	"debug/elf"
	"testing"
)

// TestELF checks the generated stub is a well-formed static executable
// whose syscall address points at a syscall instruction.
func TestELF(t *testing.T) {
	const base = 0x200000000
	img, sys := ELF(base, 1234)
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("parse stub ELF: %v", err)
	}
	if f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 || len(f.Progs) != 1 {
		t.Fatalf("type %v machine %v %d segments", f.Type, f.Machine, len(f.Progs))
	}
	p := f.Progs[0]
	if p.Type != elf.PT_LOAD || p.Vaddr != base || p.Filesz != uint64(len(img)) {
		t.Fatalf("segment %+v", p.ProgHeader)
	}
	if f.Entry < base || f.Entry >= base+p.Memsz {
		t.Fatalf("entry %#x outside the segment", f.Entry)
	}
	off := sys - base
	if !bytes.Equal(img[off:off+2], []byte{0x0f, 0x05}) {
		t.Fatalf("bytes at syscall address: % x", img[off:off+2])
	}
}

func TestSplitNs(t *testing.T) {
	tests := []struct{ in, sec, nsec int64 }{
		{0, 0, 0}, {1_500_000_000, 1, 500_000_000}, {-1_500_000_000, -2, 500_000_000}, {-1, -1, 999_999_999},
	}
	for _, tc := range tests {
		if s, n := splitNs(tc.in); s != tc.sec || n != tc.nsec {
			t.Errorf("splitNs(%d) = %d, %d; want %d, %d", tc.in, s, n, tc.sec, tc.nsec)
		}
	}
}
