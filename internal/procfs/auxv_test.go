package procfs

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestParseAuxvRecorded(t *testing.T) {
	b := readTestdata(t, "auxv.bin")
	w, err := ParseAuxv(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 46 || w[44] != 0 || w[45] != 0 {
		t.Fatalf("got %d words ending %v, want 46 ending in AT_NULL", len(w), w[len(w)-2:])
	}
	got := map[uint64]uint64{}
	for i := 0; i < len(w); i += 2 {
		got[w[i]] = w[i+1]
	}
	// AT_PAGESZ, AT_PHENT, AT_ENTRY, AT_SECURE.
	want := map[uint64]uint64{6: 4096, 4: 56, 9: 94042102456416, 23: 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("auxv[%d] = %d, want %d", k, got[k], v)
		}
	}
}

func auxvBytes(words ...uint64) []byte {
	b := make([]byte, 8*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
	return b
}

func TestParseAuxvEdge(t *testing.T) {
	// Trailing bytes after AT_NULL are dropped.
	w, err := ParseAuxv(auxvBytes(6, 4096, 0, 0, 7, 7))
	if err != nil || len(w) != 4 || w[1] != 4096 {
		t.Errorf("got %v, %v", w, err)
	}
	// AT_NULL with a non-zero value still ends the vector.
	if w, err = ParseAuxv(auxvBytes(0, 5)); err != nil || len(w) != 2 {
		t.Errorf("got %v, %v", w, err)
	}
	tests := []struct {
		name    string
		in      []byte
		errPart string
	}{
		{"empty", nil, "AT_NULL"},
		{"no AT_NULL", auxvBytes(6, 4096, 4, 56), "AT_NULL"},
		{"odd words", auxvBytes(6, 4096, 0), "multiple of 16"},
		{"truncated word", auxvBytes(6, 4096, 0, 0)[:31], "multiple of 16"},
	}
	for _, tt := range tests {
		if _, err := ParseAuxv(tt.in); err == nil || !strings.Contains(err.Error(), tt.errPart) {
			t.Errorf("%s: error %v, want one mentioning %q", tt.name, err, tt.errPart)
		}
	}
}

func TestParsePersonality(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"00000000\n", 0, true},
		{"00400000\n", 0x400000, true},
		{"0040008\n", 0x40008, true},
		{"", 0, false},
		{"0x10\n", 0, false},
		{"zz\n", 0, false},
	}
	for _, tt := range tests {
		v, err := parsePersonality([]byte(tt.in))
		if (err == nil) != tt.ok || v != tt.want {
			t.Errorf("parsePersonality(%q) = %#x, %v", tt.in, v, err)
		}
	}
}
