package image

// The manifest file (manifest.img) has this layout; all integers are
// little-endian:
//
//	manifest = magic version reserved length checksum payload
//	magic    = "RTCRIMG\x00"              ; 8 bytes
//	version  = uint32                     ; FormatVersion
//	reserved = uint32                     ; 0
//	length   = uint64                     ; len(payload), at most MaxManifestSize
//	checksum = [32]byte                   ; SHA-256 of payload
//	payload  = length bytes               ; versions 1-4: JSON encoding of Checkpoint
//	payload  = jsonlen json runs          ; version 5
//	jsonlen  = uint64                     ; len(json), at most length-8
//	json     = jsonlen bytes              ; JSON encoding of Checkpoint, without page runs
//	runs     = the rest of the payload    ; the page runs of every VMA (pagerun_bin.go)
//
// Nothing follows the payload. The header is not checksummed, but each of
// its fields is checked: magic (ErrNotImage), version (ErrVersion),
// reserved, length against the cap and the file size (ErrCorrupt).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ManifestName is the name of the manifest file in an image directory.
const ManifestName = "manifest.img"

// FormatVersion is the manifest format version this rtcr writes. Version 5
// moved the page runs out of the JSON into a binary section after it
// (pagerun_bin.go): an increment lists every run of its chain. Version 4
// added page runs held by another process's page file (PageRun.Pid, pages
// shared copy-on-write across fork). Version 3 added the image id, the parent link of incremental images, page runs
// held by an ancestor (PageRun.Depth) and the freeze time; version 2 the
// fds' owner and signal and the mappings' VmFlags. Versions 1 and 2 are
// read too (versions 1 to 4 hold the runs in the JSON). An older rtcr refuses a newer version by its number.
const FormatVersion = 5

// minFormatVersion is the oldest manifest format version this rtcr reads.
const minFormatVersion = 1

// MaxManifestSize caps the manifest payload length, so a damaged header
// cannot make the reader allocate unbounded memory.
const MaxManifestSize = 64 << 20

// manifestMagic starts every manifest file.
const manifestMagic = "RTCRIMG\x00"

// Header field offsets and total header size.
const (
	offVersion  = 8
	offReserved = 12
	offLength   = 16
	offChecksum = 24
	headerSize  = offChecksum + sha256.Size
)

// WriteManifest validates c and writes it atomically as dir/manifest.img
// (mode 0600). Write the manifest after the page files: its presence marks
// a complete image. A dump writes it through its Stage (Stage.WriteManifest).
func WriteManifest(dir string, c *Checkpoint) error {
	write, err := manifestWriter(dir, c)
	if err != nil {
		return err
	}
	return WriteFileAtomic(dir, ManifestName, write)
}

// manifestWriter validates and encodes c, and returns the function that
// writes the manifest file (dir names it in errors).
func manifestWriter(dir string, c *Checkpoint) (func(w io.Writer) error, error) {
	write, _, err := encodeManifest(dir, c)
	return write, err
}

// encodeManifest is manifestWriter that also returns the SHA-256 of the
// payload (the Checkpoint.Sum a reader will find).
func encodeManifest(dir string, c *Checkpoint) (func(w io.Writer) error, [32]byte, error) {
	var none [32]byte
	path := filepath.Join(dir, ManifestName)
	if c == nil {
		return nil, none, fmt.Errorf("writing %s: nil checkpoint", path)
	}
	if err := c.Validate(); err != nil {
		return nil, none, fmt.Errorf("writing %s: %w", path, err)
	}
	payload, err := marshalPayload(c)
	if err != nil {
		return nil, none, fmt.Errorf("writing %s: encoding checkpoint: %w", path, err)
	}
	if len(payload) > MaxManifestSize {
		return nil, none, fmt.Errorf("writing %s: payload is %d bytes, limit is %d", path, len(payload), MaxManifestSize)
	}
	hdr := make([]byte, headerSize)
	copy(hdr, manifestMagic)
	binary.LittleEndian.PutUint32(hdr[offVersion:], FormatVersion)
	binary.LittleEndian.PutUint32(hdr[offReserved:], 0)
	binary.LittleEndian.PutUint64(hdr[offLength:], uint64(len(payload)))
	sum := sha256.Sum256(payload)
	copy(hdr[offChecksum:], sum[:])
	return func(w io.Writer) error {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		_, err := w.Write(payload)
		return err
	}, sum, nil
}

// ReadManifest reads and checks dir/manifest.img: header fields, payload
// length, SHA-256, strict JSON decoding (unknown fields are errors) and
// finally c.Validate. Failures wrap ErrNotImage, ErrVersion or ErrCorrupt;
// a missing directory or manifest gives a "no image in DIR" error wrapping
// the fs error (fs.ErrNotExist).
func ReadManifest(dir string) (*Checkpoint, error) {
	path := filepath.Join(dir, ManifestName)
	// O_NONBLOCK: a FIFO in the manifest's place must not block the open;
	// O_NOFOLLOW: the manifest is a file of the image, not a link out of it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no image in %s: %w", dir, err)
		}
		return nil, fmt.Errorf("reading image in %s: %w", dir, err)
	}
	defer f.Close()
	return readOpenedManifest(f, path)
}

// readOpenedManifest reads the manifest f, opened from path: it must be a
// regular file.
func readOpenedManifest(f *os.File, path string) (*Checkpoint, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, newError(ErrNotImage, "%s is not an rtcr image: not a regular file", path)
	}
	return readManifest(f, fi.Size(), path)
}

// readManifest decodes a manifest of size bytes read from r; path names it
// in errors.
func readManifest(r io.Reader, size int64, path string) (*Checkpoint, error) {
	hdr := make([]byte, headerSize)
	n, err := io.ReadFull(r, hdr)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	// Judge the magic on what is there, so that a short foreign file is
	// "not an image" while a cut-off manifest is "truncated".
	m := min(n, len(manifestMagic))
	if string(hdr[:m]) != manifestMagic[:m] {
		return nil, newError(ErrNotImage, "%s is not an rtcr image", path)
	}
	if n < headerSize {
		return nil, corruptf("%s: truncated: file has %d bytes, header needs %d", path, n, headerSize)
	}
	v := binary.LittleEndian.Uint32(hdr[offVersion:])
	if v < minFormatVersion || v > FormatVersion {
		return nil, newError(ErrVersion, "%s: image format version %d, this rtcr reads versions %d to %d", path, v, minFormatVersion, FormatVersion)
	}
	if r := binary.LittleEndian.Uint32(hdr[offReserved:]); r != 0 {
		return nil, corruptf("%s: reserved header field is %#x, want 0", path, r)
	}
	length := binary.LittleEndian.Uint64(hdr[offLength:])
	if length > MaxManifestSize {
		return nil, corruptf("%s: header says %d payload bytes, limit is %d", path, length, MaxManifestSize)
	}
	remaining := uint64(max(size-headerSize, 0))
	if length > remaining {
		return nil, corruptf("%s: truncated: header says %d bytes, file has %d", path, length, remaining)
	}
	if length < remaining {
		return nil, corruptf("%s: has extra bytes: header says %d bytes, file has %d", path, length, remaining)
	}

	// length is now bounded by both MaxManifestSize and the file size.
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, corruptf("%s: truncated while reading payload: %w", path, err)
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:], hdr[offChecksum:headerSize]) {
		return nil, corruptf("%s: checksum mismatch", path)
	}

	doc, runs := payload, []byte(nil)
	if v >= runsVersion {
		if doc, runs, err = splitPayload(payload); err != nil {
			return nil, corruptf("%s: payload: %w", path, err)
		}
	}
	if err := scanPayload(doc); err != nil {
		return nil, corruptf("%s: payload: %w", path, err)
	}
	c, err := decodeCheckpoint(doc)
	if err != nil {
		return nil, corruptf("%s: decoding payload: %w", path, err)
	}
	if v >= runsVersion {
		if err := decodeRuns(runs, c); err != nil {
			return nil, corruptf("%s: page runs: %w", path, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Sum = sum
	c.Version = int(v)
	return c, nil
}

// runsVersion is the first format version whose payload holds the page
// runs in a section of their own after the JSON.
const runsVersion = 5

// jsonLenSize is the size of the JSON length that starts the payload of
// a manifest of runsVersion.
const jsonLenSize = 8

// marshalPayload returns the payload of a manifest of c: its JSON without
// page runs, behind its length, then the runs section.
func marshalPayload(c *Checkpoint) ([]byte, error) {
	// About 7 bytes a run: a few pages apart, a few pages long, written
	// one after the other; the JSON goes straight into the payload.
	b, err := appendCheckpoint(make([]byte, jsonLenSize), withoutRuns(c), 8*c.PageRunCount()+64)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(b, uint64(len(b)-jsonLenSize))
	return appendRuns(b, c)
}

// withoutRuns returns a copy of c whose VMAs have no page runs (the rest
// is shared with c).
func withoutRuns(c *Checkpoint) *Checkpoint {
	out := *c
	out.Processes = make([]Process, len(c.Processes))
	for i := range c.Processes {
		p := c.Processes[i]
		p.VMAs = make([]VMA, len(p.VMAs))
		for j := range p.VMAs {
			p.VMAs[j] = c.Processes[i].VMAs[j]
			p.VMAs[j].Pages = nil
		}
		out.Processes[i] = p
	}
	return &out
}

// splitPayload returns the JSON and the runs section of the payload of a
// manifest of runsVersion.
func splitPayload(payload []byte) (doc, runs []byte, err error) {
	if len(payload) < jsonLenSize {
		return nil, nil, fmt.Errorf("%d bytes, shorter than the JSON length", len(payload))
	}
	n := binary.LittleEndian.Uint64(payload)
	if n > uint64(len(payload)-jsonLenSize) {
		return nil, nil, fmt.Errorf("JSON of %d bytes in a payload of %d", n, len(payload))
	}
	doc = payload[jsonLenSize : jsonLenSize+n]
	return doc, payload[jsonLenSize+n:], nil
}

// decodeCheckpoint decodes exactly one JSON Checkpoint, rejecting unknown
// fields and trailing data.
func decodeCheckpoint(payload []byte) (*Checkpoint, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var c Checkpoint
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("trailing data after JSON value")
		}
		return nil, err
	}
	return &c, nil
}
