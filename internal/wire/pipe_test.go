package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshakeWith is handshake with each side's protection.
func handshakeWith(t *testing.T, sp, cp Protection) (*Conn, error, *Conn, error) {
	sv, cl := pair(t)
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ServerWith(sv, testToken, sp)
		ch <- res{c, err}
	}()
	c, err := ClientWith(cl, testToken, cp)
	r := <-ch
	return r.c, r.err, c, err
}

// rawFrame seals a frame as c would send it next, without sending it.
func rawFrame(c *Conn, t Type, payload []byte) []byte {
	buf := make([]byte, headerLen+maxFrame)
	copy(buf[headerLen:], payload)
	return bytes.Clone(c.sealInto(buf, t, len(payload)))
}

// testImage writes a page file of size bytes and a manifest stand-in into
// a new directory and returns it and the page file's content.
func testImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	content := make([]byte, size)
	for i := range content {
		content[i] = byte(i*13 + i>>12)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "pages-1.img"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	return src, content
}

// sendFiles sends the files of src (the page file, an empty page file and
// a manifest stand-in) and Commit, as SendImage does without a manifest
// to read.
func sendFiles(c *Conn, src string) error {
	if err := os.WriteFile(filepath.Join(src, "pages-2.img"), nil, 0o600); err != nil {
		return err
	}
	for _, name := range []string{"pages-1.img", "pages-2.img"} {
		if _, err := c.sendFile(filepath.Join(src, name), name); err != nil {
			return err
		}
	}
	_ = c.Send(File, append(binary.BigEndian.AppendUint64(nil, 2), "manifest.img"...))
	_ = c.Send(Data, []byte("{}"))
	_ = c.Send(End, nil)
	return c.SendNow(Commit, nil)
}

// TestPipelinedImage: files of several frames, and an empty one, arrive
// whole through the pipelined sending and the reading ahead, with either
// protection; the connection goes on after the Commit.
func TestPipelinedImage(t *testing.T) {
	for _, prot := range []Protection{Encrypted, IntegrityOnly} {
		s, serr, c, cerr := handshakeWith(t, prot, prot)
		if serr != nil || cerr != nil {
			t.Fatalf("%v: handshake: server %v, client %v", prot, serr, cerr)
		}
		src, content := testImage(t, 9<<20+4321)
		errc := make(chan error, 1)
		go func() {
			if err := sendFiles(c, src); err != nil {
				errc <- err
				return
			}
			_, err := c.Expect(Stored)
			errc <- err
		}()
		dir := t.TempDir()
		n, err := s.ReceiveImage(dir)
		if err != nil {
			t.Fatalf("%v: %v", prot, err)
		}
		if want := int64(len(content) + 2); n != want {
			t.Errorf("%v: received %d bytes, want %d", prot, n, want)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "pages-1.img")); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%v: page file differs (%d bytes, %v)", prot, len(got), err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "pages-2.img")); err != nil || fi.Size() != 0 {
			t.Fatalf("%v: empty page file: %v", prot, err)
		}
		if err := s.SendNow(Stored, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("%v: client: %v", prot, err)
		}
	}
}

// TestIntegrityOnlyFrames: with IntegrityOnly the payload travels in the
// clear (the price), and a frame changed on the way, replayed or sent
// with a tag of the other direction is refused as with Encrypted.
func TestIntegrityOnlyFrames(t *testing.T) {
	s, serr, c, cerr := handshakeWith(t, IntegrityOnly, IntegrityOnly)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	secret := []byte("the process's memory")
	f := rawFrame(c, Data, secret)
	if !bytes.Contains(f, secret) {
		t.Fatal("an integrity-only frame does not carry its payload in the clear")
	}
	go func() { _, _ = c.c.Write(f) }()
	if p, err := s.Expect(Data); err != nil || !bytes.Equal(p, secret) {
		t.Fatalf("frame: %q, %v", p, err)
	}
	// The same frame again: its counter is past.
	go func() { _, _ = c.c.Write(f) }()
	if _, err := s.Expect(Data); !errors.Is(err, ErrProtocol) {
		t.Fatalf("replayed frame: %v, want %v", err, ErrProtocol)
	}
	for i, flip := range []int{headerLen + 3, 0, len(secret) + headerLen + 2} {
		s, serr, c, cerr := handshakeWith(t, IntegrityOnly, IntegrityOnly)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		f := rawFrame(c, Data, secret)
		f[flip] ^= 1 // a payload byte, the type (data becomes end), a tag byte
		go func() { _, _ = c.c.Write(f) }()
		if _, _, err := s.Recv(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("tampered frame %d: %v, want %v", i, err, ErrProtocol)
		}
	}
}

// TestProtectionMismatchRefused: a client and a server that chose
// different protections are refused at the handshake, both told why.
func TestProtectionMismatchRefused(t *testing.T) {
	for _, p := range [][2]Protection{{Encrypted, IntegrityOnly}, {IntegrityOnly, Encrypted}} {
		_, serr, _, cerr := handshakeWith(t, p[0], p[1])
		if !errors.Is(cerr, ErrAuth) || serr == nil {
			t.Fatalf("server %v, client %v: server %v, client %v: want both refused", p[0], p[1], serr, cerr)
		}
		if !strings.Contains(serr.Error(), "--wire-integrity-only") || !strings.Contains(cerr.Error(), "--wire-integrity-only") {
			t.Errorf("server %v, client %v: messages do not say why: server %v, client %v", p[0], p[1], serr, cerr)
		}
	}
}

// TestPipelinedSendErrors: a file shorter than announced ends the
// pipelined sending with an error once the frames before went (the
// connection goes on); a socket that fails ends it, and every later send
// fails too.
func TestPipelinedSendErrors(t *testing.T) {
	s, serr, c, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	src, content := testImage(t, 3<<20+5)
	f, err := os.Open(filepath.Join(src, "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.sendBody(f, "pages-1.img", 0, int64(len(content))+(2<<20))
		t.Logf("short file: %v", err)
		if err == nil || !strings.Contains(err.Error(), "shrank") {
			errc <- err
			return
		}
		errc <- c.SendNow(Commit, nil) // the counters still agree
	}()
	var got int
	for {
		tp, p, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if tp == Commit {
			break
		}
		if tp != Data {
			t.Fatalf("got %v", tp)
		}
		got += len(p)
	}
	if err := <-errc; err != nil {
		t.Fatalf("short file: %v", err)
	}
	if got != len(content) {
		t.Errorf("received %d bytes before the error, want %d", got, len(content))
	}

	// The socket fails under a file of many frames.
	s.Close()
	big, _ := testImage(t, 32<<20)
	done := make(chan error, 1)
	go func() {
		_, err := c.sendFile(filepath.Join(big, "pages-1.img"), "pages-1.img")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("sending into a closed connection succeeded")
		}
		if err2 := c.SendNow(Data, []byte("x")); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("send after a failed one: %v, want %v", err2, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("pipelined sending into a closed connection did not return")
	}
}

// TestReadaheadRefusals: a frame changed on the way in the middle of a
// file read ahead is refused and leaves no file; a refusal while frames
// are still read ahead (a file over its announced size) ends the reading
// ahead, and the connection no longer receives.
func TestReadaheadRefusals(t *testing.T) {
	for _, prot := range []Protection{Encrypted, IntegrityOnly} {
		s, serr, c, cerr := handshakeWith(t, prot, prot)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		chunk := bytes.Repeat([]byte{7}, MaxPayload)
		var stream []byte
		stream = append(stream, rawFrame(c, File, append(binary.BigEndian.AppendUint64(nil, 8<<20), "pages-1.img"...))...)
		for i := 0; i < 8; i++ {
			f := rawFrame(c, Data, chunk)
			if i == 4 {
				f[headerLen+1000] ^= 0x80
			}
			stream = append(stream, f...)
		}
		go func() { _, _ = c.c.Write(stream) }()
		dir := t.TempDir()
		if _, err := s.ReceiveImage(dir); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "integrity") {
			t.Fatalf("%v: corrupted frame: %v, want %v", prot, err, ErrProtocol)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%v: a refused image left %v", prot, ents)
		}

		// A file longer than announced, followed by frames that keep
		// coming and a client that does not close.
		s, serr, c, cerr = handshakeWith(t, prot, prot)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		stream = rawFrame(c, File, append(binary.BigEndian.AppendUint64(nil, 1<<20), "pages-1.img"...))
		for i := 0; i < 6; i++ {
			stream = append(stream, rawFrame(c, Data, chunk)...)
		}
		go func() { _, _ = c.c.Write(stream) }()
		errc := make(chan error, 1)
		go func() {
			_, err := s.ReceiveImage(t.TempDir())
			errc <- err
		}()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%v: long file: %v, want %v", prot, err, ErrProtocol)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%v: a refused image with frames still coming did not return", prot)
		}
		if _, _, err := s.Recv(); !errors.Is(err, errAbandoned) {
			t.Fatalf("%v: receive after an abandoned reading ahead: %v, want %v", prot, err, errAbandoned)
		}
	}
}
