package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestStreamedFile: a page file sent in Chunk frames while it grows, then
// finished by a Tail, arrives whole; a file streamed but never finished
// leaves nothing behind.
func TestStreamedFile(t *testing.T) {
	s, serr, c, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	content := make([]byte, 3<<20+123)
	for i := range content {
		content[i] = byte(i * 7)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "pages-1.img"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		r := bytes.NewReader(content)
		for _, step := range [][2]int64{{0, 1 << 20}, {1 << 20, 2<<20 + 5}} {
			if err := c.SendChunks(r, "pages-1.img", step[0], step[1]); err != nil {
				errc <- err
				return
			}
		}
		if err := c.SendChunks(r, "pages-2.img", 0, 10); err != nil { // never finished
			errc <- err
			return
		}
		if _, err := c.sendTail(filepath.Join(src, "pages-1.img"), "pages-1.img", 2<<20+5); err != nil {
			errc <- err
			return
		}
		_ = c.Send(File, append(binary.BigEndian.AppendUint64(nil, 2), "manifest.img"...))
		_ = c.Send(Data, []byte("{}"))
		_ = c.Send(End, nil)
		errc <- c.SendNow(Commit, nil)
	}()
	dir := t.TempDir()
	n, err := s.ReceiveImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := int64(len(content) + 10 + 2); n != want {
		t.Errorf("received %d bytes, want %d", n, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "pages-1.img"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("streamed file: %d bytes (%v), want %d, equal %v", len(got), err, len(content), bytes.Equal(got, content))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want pages-1.img and manifest.img", names)
	}
}

// TestStreamRefusals: a chunk that does not continue its file, a chunk of
// a name outside an image's, and a tail that does not match what was
// streamed are protocol violations.
func TestStreamRefusals(t *testing.T) {
	chunk := func(off uint64, name string, data string) []byte {
		p := binary.BigEndian.AppendUint64(nil, off)
		p = append(p, byte(len(name)))
		return append(append(p, name...), data...)
	}
	tail := func(size, sent uint64, name string) []byte {
		p := binary.BigEndian.AppendUint64(nil, size)
		p = binary.BigEndian.AppendUint64(p, sent)
		return append(p, name...)
	}
	type frame struct {
		t Type
		p []byte
	}
	for what, frames := range map[string][]frame{
		"gap at the start":  {{Chunk, chunk(5, "pages-1.img", "x")}},
		"gap later":         {{Chunk, chunk(0, "pages-1.img", "xy")}, {Chunk, chunk(3, "pages-1.img", "z")}},
		"hostile name":      {{Chunk, chunk(0, "../pages-1.img", "x")}},
		"manifest streamed": {{Chunk, chunk(0, "manifest.img", "x")}},
		"tail mismatch":     {{Chunk, chunk(0, "pages-1.img", "xy")}, {Tail, tail(4, 1, "pages-1.img")}},
		"tail unknown":      {{Tail, tail(4, 0, "pages-1.img")}},
		"tail too short":    {{Chunk, chunk(0, "pages-1.img", "xy")}, {Tail, tail(1, 2, "pages-1.img")}},
	} {
		s, serr, c, cerr := handshake(t, testToken, testToken)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		go func() {
			for _, f := range frames {
				_ = c.SendNow(f.t, f.p)
			}
		}()
		dir := t.TempDir()
		if _, err := s.ReceiveImage(dir); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want %v", what, err, ErrProtocol)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: %d entries left", what, len(ents))
		}
		s.Close()
		c.Close()
	}
}
