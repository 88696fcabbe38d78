package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testToken = Token("0123456789abcdef0123456789abcdef")

// pair returns a TCP connection pair on loopback (server side, client
// side), closed at the end of the test.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	cl, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sv := <-ch
	t.Cleanup(func() { cl.Close(); sv.Close() })
	return sv, cl
}

// handshake runs both sides and returns their results.
func handshake(t *testing.T, serverTok, clientTok Token) (*Conn, error, *Conn, error) {
	sv, cl := pair(t)
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := Server(sv, serverTok)
		ch <- res{c, err}
	}()
	c, err := Client(cl, clientTok)
	r := <-ch
	return r.c, r.err, c, err
}

func TestHandshakeAndFrames(t *testing.T) {
	s, serr, c, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	big := bytes.Repeat([]byte("x"), MaxPayload)
	go func() {
		_ = c.Send(Open, OpenRequest(ModeStore, "img"))
		_ = c.SendNow(Data, big)
	}()
	p, err := s.Expect(Open)
	if err != nil {
		t.Fatal(err)
	}
	if m, name, err := ParseOpen(p); err != nil || m != ModeStore || name != "img" {
		t.Fatalf("open: %v %q %v", m, name, err)
	}
	if p, err = s.Expect(Data); err != nil || !bytes.Equal(p, big) {
		t.Fatalf("data: %d bytes, %v", len(p), err)
	}
	if err := c.Send(Data, append(big, 'y')); err == nil {
		t.Fatal("a payload over MaxPayload was sent")
	}
}

func TestWrongTokenRefused(t *testing.T) {
	_, serr, _, cerr := handshake(t, testToken, Token("another token of enough length"))
	if !errors.Is(serr, ErrAuth) || !errors.Is(cerr, ErrAuth) {
		t.Fatalf("server %v, client %v: want both %v", serr, cerr, ErrAuth)
	}
}

// TestTamperedFrameRefused flips one bit of a sealed frame on the way.
func TestTamperedFrameRefused(t *testing.T) {
	s, serr, c, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	// Seal a frame into a buffer, flip a bit, and write it raw.
	var buf bytes.Buffer
	c.w.Reset(&buf)
	if err := c.SendNow(Data, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[headerLen+1] ^= 1
	go func() { _, _ = c.c.Write(b) }()
	if _, err := s.Expect(Data); !errors.Is(err, ErrProtocol) {
		t.Fatalf("tampered frame: %v, want %v", err, ErrProtocol)
	}
}

// TestLengthBounded sends a header claiming 1 GiB before authentication.
func TestLengthBounded(t *testing.T) {
	sv, cl := pair(t)
	var h [headerLen]byte
	h[0] = byte(Hello)
	binary.BigEndian.PutUint32(h[4:], 1<<30)
	go func() { _, _ = cl.Write(h[:]) }()
	if _, err := Server(sv, testToken); !errors.Is(err, ErrProtocol) {
		t.Fatalf("huge hello: %v, want %v", err, ErrProtocol)
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		want    string // "" for success
	}{
		{"0123456789abcdef0123\n", 0o600, ""},
		{"0123456789abcdef0123\n", 0o640, "chmod 600"},
		{"0123456789abcdef0123\n", 0o604, "chmod 600"},
		{"short\n", 0o600, "at least 16"},
	} {
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		tok, err := ReadToken(path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("mode %o: %v", tc.mode, err)
		case tc.want == "" && string(tok) != strings.TrimSpace(tc.content):
			t.Errorf("token %q", tok)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("mode %o, %q: %v, want an error with %q", tc.mode, tc.content, err, tc.want)
		}
	}
}

// TestReceiveRefusesBadNames: only an image's file names are written.
func TestReceiveRefusesBadNames(t *testing.T) {
	for _, name := range []string{"../x", "manifest.img/..", ".hidden", "notes.txt"} {
		s, serr, c, cerr := handshake(t, testToken, testToken)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		go func() {
			_ = c.SendNow(File, append(binary.BigEndian.AppendUint64(nil, 1), name...))
		}()
		dir := t.TempDir()
		if _, err := s.ReceiveImage(dir); !errors.Is(err, ErrProtocol) {
			t.Errorf("file %q: %v, want %v", name, err, ErrProtocol)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("file %q: %d entries written", name, len(ents))
		}
	}
}
