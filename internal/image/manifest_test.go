package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

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
	if got.Sum == ([32]byte{}) {
		t.Error("reader did not set the manifest checksum")
	}
	got.Sum = want.Sum // set by the reader, never written
	if got.Version != FormatVersion {
		t.Errorf("reader set version %d, want %d", got.Version, FormatVersion)
	}
	got.Version = want.Version
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
		{"version bit", flip(offVersion, 0x08), ErrVersion, "image format version 13, this rtcr reads versions 1 to 5"},
		{"reserved bit", flip(offReserved+1, 0x01), ErrCorrupt, "reserved"},
		{"length bit", flip(offLength, 0x01), ErrCorrupt, ""},
		{"length high bit", flip(offLength+7, 0x80), ErrCorrupt, "limit"},
		{"length over cap", withLength(MaxManifestSize + 1), ErrCorrupt, "limit"},
		{"sha bit", flip(offChecksum+31, 0x80), ErrCorrupt, "checksum mismatch"},
		{"payload bit", flip(headerSize+10, 0x02), ErrCorrupt, "checksum mismatch"},
		{"last payload bit", flip(len(good)-1, 0x01), ErrCorrupt, "checksum mismatch"},
		{"version 7", buildManifest(7, good[headerSize:]), ErrVersion, "image format version 7, this rtcr reads versions 1 to 5"},
		{"version 0", buildManifest(0, good[headerSize:]), ErrVersion, "version 0"},
		{"random bytes", random, ErrNotImage, "not an rtcr image"},
		{"json file", []byte(`{"Arch":"x86_64","Processes":[]}`), ErrNotImage, "not an rtcr image"},
		{"short foreign", []byte("hi"), ErrNotImage, "not an rtcr image"},
		{"payload not json", buildManifest(1, []byte("not json")), ErrCorrupt, "decoding payload"},
		{"payload unknown field", buildManifest(1, []byte(`{"Arch":"x86_64","Bogus":1}`)), ErrCorrupt, "Bogus"},
		{"payload trailing data", buildManifest(1, append(jsonOf(t, sampleCheckpoint()), " {}"...)), ErrCorrupt, "trailing"},
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

// TestReadManifestVersion1: images of earlier format versions (no fd
// owners, no VmFlags; page runs in the JSON up to version 4) are still
// read, to the same checkpoint.
func TestReadManifestVersion1(t *testing.T) {
	want := sampleCheckpoint()
	for _, v := range []uint32{1, 4} {
		c, err := readBytes(t, buildManifest(v, jsonOf(t, want)))
		if err != nil || c == nil {
			t.Fatalf("version %d manifest: %v", v, err)
		}
		if c.Version != int(v) {
			t.Errorf("version %d manifest read as version %d", v, c.Version)
		}
		c.Sum, c.Version = want.Sum, want.Version
		if !reflect.DeepEqual(c, want) {
			t.Errorf("version %d manifest read as\n%+v\nwant %+v", v, c, want)
		}
	}
}

// jsonOf is the payload of a manifest of c in format version 4: its JSON,
// page runs included.
func jsonOf(t testing.TB, c *Checkpoint) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withJSONLen is a payload of format version 5 made of doc and runs.
func withJSONLen(doc, runs []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(doc)))
	return append(append(b, doc...), runs...)
}
