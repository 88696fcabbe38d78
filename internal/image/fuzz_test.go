package image

import (
	"bytes"
	"errors"
	"testing"
)

// checkReadResult fails t unless (c, err) is a checkpoint that validates or
// an error wrapping one of the image sentinels.
func checkReadResult(t *testing.T, c *Checkpoint, err error) {
	t.Helper()
	if err != nil {
		if c != nil {
			t.Fatalf("checkpoint returned with error %v", err)
		}
		if !errors.Is(err, ErrNotImage) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v wraps no image sentinel", err)
		}
		return
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("accepted checkpoint does not validate: %v", err)
	}
}

// FuzzReadManifest feeds arbitrary manifest files to the reader (in memory,
// through the same code ReadManifest runs after opening the file).
func FuzzReadManifest(f *testing.F) {
	good := validManifest(f)
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add([]byte{})
	f.Add([]byte(`{"Arch":"x86_64"}`))
	f.Add(buildManifest(1, []byte(`{"Arch":"x86_64","Processes":[{"Pid":1,"Threads":[{"Tid":1}]}]}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := readManifest(bytes.NewReader(data), int64(len(data)), "fuzz/"+ManifestName)
		checkReadResult(t, c, err)
	})
}

// FuzzManifestPayload fuzzes the JSON payload of a manifest of format
// version 4 (page runs in the JSON) behind a correct header and checksum,
// which FuzzReadManifest can hardly reach; it exercises strict decoding
// and Validate. FuzzRunsSection fuzzes the runs section of version 5.
func FuzzManifestPayload(f *testing.F) {
	f.Add(jsonOf(f, sampleCheckpoint()))
	f.Add([]byte(`{"Arch":"x86_64","Processes":[{"Pid":1,"Threads":[{"Tid":1}]}]}`))
	f.Add([]byte(`{"Arch":"x86_64","Processes":[{"Pid":1,"Threads":[{"Tid":1}],` +
		`"VMAs":[{"Start":4096,"End":8192,"Kind":"anon","Pages":[{"Addr":4096,"Count":1,"FileOff":0}]}],` +
		`"PageFile":"p","PageFileSize":4096,"PageChecksums":[0]}]}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > MaxManifestSize {
			return
		}
		data := buildManifest(runsVersion-1, payload)
		c, err := readManifest(bytes.NewReader(data), int64(len(data)), "fuzz/"+ManifestName)
		checkReadResult(t, c, err)
	})
}

// TestReadManifestFile checks that the file-based reader agrees with the
// in-memory one on the fuzz seeds.
func TestReadManifestFile(t *testing.T) {
	good := validManifest(t)
	for _, data := range [][]byte{good, good[:10], {}, []byte("{}")} {
		c1, err1 := readBytes(t, data)
		c2, err2 := readManifest(bytes.NewReader(data), int64(len(data)), "x")
		if (err1 == nil) != (err2 == nil) || (c1 == nil) != (c2 == nil) {
			t.Errorf("file and memory readers disagree: %v vs %v", err1, err2)
		}
	}
}
