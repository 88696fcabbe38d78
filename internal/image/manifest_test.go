package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sampleCheckpoint returns a small but realistic valid checkpoint.
func sampleCheckpoint() *Checkpoint {
	xstate := make([]byte, 832)
	for i := range xstate {
		xstate[i] = byte(i * 7)
	}
	pages := make([]byte, 4*PageSize)
	return &Checkpoint{
		Kernel:  "6.8.0-45-generic #45-Ubuntu SMP",
		Arch:    "x86_64",
		Created: 1717171717123456789,
		Processes: []Process{{
			Pid:         4242,
			Comm:        "sleeper",
			Exe:         "/usr/bin/sleeper",
			Cwd:         "/home/user",
			Umask:       0o022,
			Personality: 0,
			Rlimits:     []Rlimit{{Resource: 7, Cur: 1024, Max: 4096}, {Resource: 3, Cur: 8 << 20, Max: ^uint64(0)}},
			MM: MM{
				StartCode: 0x400000, EndCode: 0x401000,
				StartData: 0x401000, EndData: 0x402000,
				StartBrk: 0x1000000, Brk: 0x1004000,
				StartStack: 0x7ffc0000f000,
				ArgStart:   0x7ffc0000e000, ArgEnd: 0x7ffc0000e010,
				EnvStart: 0x7ffc0000e010, EnvEnd: 0x7ffc0000e100,
				Auxv: []uint64{6, 4096, 25, 0x7ffc0000e200, 0, 0},
			},
			VMAs: []VMA{
				{
					Start: 0x400000, End: 0x402000, Prot: unix.PROT_READ | unix.PROT_EXEC,
					Kind: KindFile, Name: "/usr/bin/sleeper", Path: "/usr/bin/sleeper",
					Dev: 0x803, Inode: 123456, FileSize: 8192, FileMtime: 1700000000000000000,
					Pages: []PageRun{{Addr: 0x401000, Count: 1, FileOff: 0}},
				},
				{
					Start: 0x1000000, End: 0x1004000, Prot: unix.PROT_READ | unix.PROT_WRITE,
					Kind: KindHeap, Name: "[heap]",
					Pages: []PageRun{
						{Addr: 0x1000000, Count: 2, FileOff: PageSize},
						{Addr: 0x1003000, Count: 1, FileOff: 3 * PageSize},
					},
				},
			},
			VDSO: []byte{0x7f, 'E', 'L', 'F', 2, 1, 1},
			FDs: []FD{
				{Num: 0, Kind: FDInherit, Desc: "/dev/pts/0 (tty)"},
				{Num: 1, Kind: FDInherit, Desc: "pipe:[1234]"},
				{Num: 3, Kind: FDFile, Path: "/tmp/sleeper.log", Flags: unix.O_WRONLY | unix.O_APPEND | unix.O_CLOEXEC,
					Offset: 77, Mode: 0o100644, Size: 77, Desc: "/tmp/sleeper.log"},
			},
			Sigactions: []Sigaction{
				{Signal: 2, Handler: 0x401100, Flags: 0x04000000, Restorer: 0x401200, Mask: 1 << 14},
				{Signal: 15, Handler: 1},
			},
			Threads: []Thread{{
				Tid:        4242,
				Regs:       unix.PtraceRegs{Rip: 0x401080, Rsp: 0x7ffc0000d000, Rax: ^uint64(37), Orig_rax: 35, Cs: 0x33, Ss: 0x2b},
				XState:     xstate,
				SigMask:    1 << 9,
				Rseq:       &Rseq{Ptr: 0x7f0000001000, Len: 32, Sig: 0x53053053},
				TidAddress: 0x7f0000002000,
				AltStack:   SigAltStack{Flags: 2},
				Name:       "sleeper",
				Syscall:    "nanosleep: restart",
			}},
			PageFile:      PageFileName(4242),
			PageFileSize:  int64(len(pages)),
			PageChecksums: []uint32{crcOf(pages)},
		}},
	}
}

func crcOf(b []byte) uint32 {
	pw := NewPageWriter(new(bytes.Buffer))
	pw.Write(b)
	return pw.Checksums()[0]
}

// validManifest returns the bytes of a valid manifest file.
func validManifest(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := WriteManifest(dir, sampleCheckpoint()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildManifest assembles a manifest with a correct checksum around payload.
func buildManifest(version uint32, payload []byte) []byte {
	hdr := make([]byte, headerSize)
	copy(hdr, manifestMagic)
	binary.LittleEndian.PutUint32(hdr[offVersion:], version)
	binary.LittleEndian.PutUint64(hdr[offLength:], uint64(len(payload)))
	sum := sha256.Sum256(payload)
	copy(hdr[offChecksum:], sum[:])
	return append(hdr, payload...)
}

// readBytes stores b as a manifest in a fresh directory and reads it.
func readBytes(t testing.TB, b []byte) (*Checkpoint, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return ReadManifest(dir)
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := sampleCheckpoint()
	if err := WriteManifest(dir, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("manifest mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func TestWriteManifestRejectsInvalid(t *testing.T) {
	c := sampleCheckpoint()
	c.Arch = "arm64"
	dir := t.TempDir()
	if err := WriteManifest(dir, c); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("WriteManifest(invalid) = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("invalid checkpoint left a manifest: %v", err)
	}
}

func TestReadManifestDamaged(t *testing.T) {
	good := validManifest(t)
	flip := func(off int, bit byte) []byte {
		b := bytes.Clone(good)
		b[off] ^= bit
		return b
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	withLength := func(n uint64) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b[offLength:], n)
		return b
	}
	tests := []struct {
		name string
		data []byte
		want error
		msg  string // substring of the error text
	}{
		{"empty", nil, ErrCorrupt, "truncated"},
		{"truncated in magic", good[:5], ErrCorrupt, "truncated"},
		{"truncated in header", good[:headerSize-3], ErrCorrupt, "truncated"},
		{"header only", good[:headerSize], ErrCorrupt, "truncated: header says"},
		{"truncated in payload", good[:headerSize+40], ErrCorrupt, "truncated: header says"},
		{"one byte short", good[:len(good)-1], ErrCorrupt, "truncated"},
		{"extra bytes", append(bytes.Clone(good), '\n'), ErrCorrupt, "extra bytes"},
		{"magic bit", flip(2, 0x10), ErrNotImage, "is not an rtcr image"},
		{"version bit", flip(offVersion, 0x04), ErrVersion, "image format version 5, this rtcr reads version 1"},
		{"reserved bit", flip(offReserved+1, 0x01), ErrCorrupt, "reserved"},
		{"length bit", flip(offLength, 0x01), ErrCorrupt, ""},
		{"length high bit", flip(offLength+7, 0x80), ErrCorrupt, "limit"},
		{"length over cap", withLength(MaxManifestSize + 1), ErrCorrupt, "limit"},
		{"sha bit", flip(offChecksum+31, 0x80), ErrCorrupt, "checksum mismatch"},
		{"payload bit", flip(headerSize+10, 0x02), ErrCorrupt, "checksum mismatch"},
		{"last payload bit", flip(len(good)-1, 0x01), ErrCorrupt, "checksum mismatch"},
		{"version 7", buildManifest(7, good[headerSize:]), ErrVersion, "image format version 7, this rtcr reads version 1"},
		{"version 0", buildManifest(0, good[headerSize:]), ErrVersion, "version 0"},
		{"random bytes", random, ErrNotImage, "not an rtcr image"},
		{"json file", []byte(`{"Arch":"x86_64","Processes":[]}`), ErrNotImage, "not an rtcr image"},
		{"short foreign", []byte("hi"), ErrNotImage, "not an rtcr image"},
		{"payload not json", buildManifest(1, []byte("not json")), ErrCorrupt, "decoding payload"},
		{"payload unknown field", buildManifest(1, []byte(`{"Arch":"x86_64","Bogus":1}`)), ErrCorrupt, "Bogus"},
		{"payload trailing data", buildManifest(1, append(bytes.Clone(good[headerSize:]), " {}"...)), ErrCorrupt, "trailing"},
		{"payload null", buildManifest(1, []byte("null")), ErrCorrupt, "arch"},
		{"payload empty", buildManifest(1, nil), ErrCorrupt, "decoding payload"},
		{"payload invalid checkpoint", buildManifest(1, []byte(`{"Arch":"x86_64","Processes":[]}`)), ErrCorrupt, "no processes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := readBytes(t, tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadManifest = %v, %v; want error wrapping %v", c, err, tt.want)
			}
			if c != nil {
				t.Errorf("ReadManifest returned a checkpoint with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if !strings.Contains(err.Error(), ManifestName) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestReadManifestMissing(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "nope")} {
		_, err := ReadManifest(dir)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no image in "+dir) {
			t.Errorf("ReadManifest(%s) = %v, want 'no image in DIR' wrapping fs.ErrNotExist", dir, err)
		}
	}
}

func TestReadManifestDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ManifestName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); !errors.Is(err, ErrNotImage) {
		t.Errorf("ReadManifest(manifest is a dir) = %v, want ErrNotImage", err)
	}
}
