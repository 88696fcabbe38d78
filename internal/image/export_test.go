package image

import (
	"bytes"
	"encoding/json"
)

// ReadPayloadForTest reads a manifest of format version 4 (its payload the
// JSON of a checkpoint, page runs included) made of payload behind a
// correct header and checksum, as ReadManifest would (for the fuzz target
// in package image_test, which also runs the inspect printer). The runs
// section of version 5 has FuzzRunsSection.
func ReadPayloadForTest(payload []byte) (*Checkpoint, error) {
	data := buildManifest(runsVersion-1, payload)
	return readManifest(bytes.NewReader(data), int64(len(data)), "fuzz/"+ManifestName)
}

// SamplePayloadForTest is the payload of a small valid manifest of format
// version 4 (ReadPayloadForTest).
func SamplePayloadForTest() []byte {
	c := sampleCheckpoint()
	c.Processes[0].Creds = &Creds{Uid: 65534, Euid: 65534, Suid: 65534, Fsuid: 65534,
		Gid: 65534, Egid: 65534, Sgid: 65534, Fsgid: 65534}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}
