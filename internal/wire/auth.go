package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

const (
	// Magic opens every hello.
	Magic = "RTCRWIRE"
	// Version is the protocol version; peers of another version are
	// refused at the hello.
	Version = 1
	// MinTokenLen is the shortest token accepted: the challenge an
	// eavesdropper sees must not let it guess the token offline.
	MinTokenLen = 16
	// maxTokenLen bounds the token file.
	maxTokenLen = 4096
	// helloLen is the size of a hello payload: magic, version, nonce.
	helloLen = 8 + 4 + 32
	// HandshakeTimeout bounds the whole handshake.
	HandshakeTimeout = 10 * time.Second
)

// ErrAuth reports a peer that does not hold the token.
var ErrAuth = errors.New("authentication failed")

// Protection is what the frames after the handshake are given. Both sides
// choose it (rtcr serve and migrate --wire-integrity-only); it is bound
// into the handshake's proofs and keys, so a peer that chose the other is
// refused and no one on the path can change it.
type Protection uint8

const (
	// Encrypted, the default: each frame sealed with AES-256-GCM,
	// secret and authenticated.
	Encrypted Protection = 0
	// IntegrityOnly: each frame in the clear followed by an AES-256-GMAC
	// tag (GCM with the header and payload as additional data and nothing
	// to encrypt) under a key of its direction, its counter as nonce: a
	// frame changed, dropped, replayed or reordered is refused as with
	// Encrypted, but whoever sees the traffic reads the image (the
	// process's memory, its secrets with it). GHASH alone runs about
	// twice as fast as AES-GCM (README "Migration", Speed); meant for a
	// network where no one else listens, or under TLS, which encrypts.
	IntegrityOnly Protection = 1
)

// String names the protection in messages.
func (p Protection) String() string {
	if p == IntegrityOnly {
		return "integrity only (authenticated, not encrypted)"
	}
	return "encrypted"
}

// label is a handshake label of the protection p: Encrypted keeps the
// labels of before it existed.
func (p Protection) label(s string) string {
	if p == IntegrityOnly {
		return s + " integrity-only"
	}
	return s
}

// Token is the shared secret of a sender and rtcr serve.
type Token []byte

// ReadToken reads a token file: a regular file owned by root or the
// caller, readable by nobody else (mode 0600 or 0400), holding at least
// MinTokenLen bytes (surrounding white space is not part of the token).
// Anything else is refused, saying what to fix.
func ReadToken(path string) (Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("token file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s: mode %04o lets others read or change it; chmod 600 %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("token file %s: owned by uid %d, neither root nor you", path, st.Uid)
	}
	if fi.Size() > maxTokenLen {
		return nil, fmt.Errorf("token file %s: %d bytes, more than %d", path, fi.Size(), maxTokenLen)
	}
	b := make([]byte, maxTokenLen+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	tok := bytes.TrimSpace(b[:n])
	if len(tok) < MinTokenLen {
		return nil, fmt.Errorf("token file %s: %d bytes of token, want at least %d (head -c 32 /dev/urandom | base64 > %s)", path, len(tok), MinTokenLen, path)
	}
	return Token(tok), nil
}

// mac is HMAC-SHA256(token, label ‖ parts…).
func (t Token) mac(label string, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, t)
	h.Write([]byte(label))
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// aead makes the AES-256-GCM of one direction from the token and both
// nonces.
func (t Token) aead(label string, ns, nc []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(t.mac(label, ns, nc))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sendHello sends this side's hello with a fresh nonce and returns it.
func sendHello(c *Conn) ([]byte, error) {
	p := make([]byte, helloLen)
	copy(p, Magic)
	binary.BigEndian.PutUint32(p[8:], Version)
	if _, err := rand.Read(p[12:]); err != nil {
		return nil, err
	}
	if err := c.SendNow(Hello, p); err != nil {
		return nil, err
	}
	return p[12:], nil
}

// recvHello reads the peer's hello and returns its nonce.
func recvHello(c *Conn) ([]byte, error) {
	p, err := c.Expect(Hello)
	if err != nil {
		return nil, err
	}
	if len(p) != helloLen || string(p[:8]) != Magic {
		return nil, fmt.Errorf("%s does not speak rtcr's protocol: %w", c.peer, ErrProtocol)
	}
	if v := binary.BigEndian.Uint32(p[8:]); v != Version {
		return nil, fmt.Errorf("%s speaks protocol version %d, this rtcr %d: %w", c.peer, v, Version, ErrProtocol)
	}
	return bytes.Clone(p[12:]), nil
}

// Server runs the server side of the handshake on a new connection: the
// client must prove it holds tok before this returns a Conn; until then
// nothing but hello and auth frames are read. Whatever fails, nc is
// closed. The frames are Encrypted.
func Server(nc net.Conn, tok Token) (*Conn, error) {
	return ServerWith(nc, tok, Encrypted)
}

// ServerWith is Server with the frames given prot; a client that chose
// another protection is refused, told why.
func ServerWith(nc net.Conn, tok Token, prot Protection) (_ *Conn, err error) {
	c := newConn(nc)
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	_ = nc.SetDeadline(time.Now().Add(HandshakeTimeout))
	ns, err := sendHello(c)
	if err != nil {
		return nil, err
	}
	ncl, err := recvHello(c)
	if err != nil {
		return nil, err
	}
	proof, err := c.Expect(Auth)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(proof, tok.mac(prot.label("rtcr-wire client"), ns, ncl)) != 1 {
		other := Encrypted
		if prot == Encrypted {
			other = IntegrityOnly
		}
		if subtle.ConstantTimeCompare(proof, tok.mac(other.label("rtcr-wire client"), ns, ncl)) == 1 {
			msg := fmt.Sprintf("the client wants frames %v, this server %v: --wire-integrity-only on both sides or on neither", other, prot)
			c.SendError(msg)
			return nil, fmt.Errorf("client %s: %s: %w", c.peer, msg, ErrAuth)
		}
		c.SendError(ErrAuth.Error())
		return nil, fmt.Errorf("client %s: %w (wrong token)", c.peer, ErrAuth)
	}
	if err := c.SendNow(AuthOK, tok.mac(prot.label("rtcr-wire server"), ns, ncl)); err != nil {
		return nil, err
	}
	if err := c.keys(tok, ns, ncl, "server", prot); err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// Client runs the client side of the handshake: the server must prove it
// holds tok too, so the image goes only to the intended server. The
// frames are Encrypted.
func Client(nc net.Conn, tok Token) (*Conn, error) {
	return ClientWith(nc, tok, Encrypted)
}

// ClientWith is Client with the frames given prot; the server must have
// chosen the same.
func ClientWith(nc net.Conn, tok Token, prot Protection) (_ *Conn, err error) {
	c := newConn(nc)
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	_ = nc.SetDeadline(time.Now().Add(HandshakeTimeout))
	ncl, err := sendHello(c)
	if err != nil {
		return nil, err
	}
	ns, err := recvHello(c)
	if err != nil {
		return nil, err
	}
	if err := c.SendNow(Auth, tok.mac(prot.label("rtcr-wire client"), ns, ncl)); err != nil {
		return nil, err
	}
	proof, err := c.Expect(AuthOK)
	if err != nil {
		var pe *PeerError
		if errors.As(err, &pe) {
			if pe.Msg != ErrAuth.Error() {
				return nil, fmt.Errorf("server %s refused the connection: %s: %w", c.peer, pe.Msg, ErrAuth)
			}
			return nil, fmt.Errorf("server %s refused the token: %w", c.peer, ErrAuth)
		}
		return nil, err
	}
	if subtle.ConstantTimeCompare(proof, tok.mac(prot.label("rtcr-wire server"), ns, ncl)) != 1 {
		return nil, fmt.Errorf("server %s: %w (it does not hold the token, or chose another protection than %v)", c.peer, ErrAuth, prot)
	}
	if err := c.keys(tok, ns, ncl, "client", prot); err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// keys installs the two directions' AEADs: the client sends with the
// "c2s" key and the server with the "s2c" key; the keys of IntegrityOnly
// are others than Encrypted's.
func (c *Conn) keys(tok Token, ns, ncl []byte, side string, prot Protection) error {
	c2s, err := tok.aead(prot.label("rtcr-wire c2s"), ns, ncl)
	if err != nil {
		return err
	}
	s2c, err := tok.aead(prot.label("rtcr-wire s2c"), ns, ncl)
	if err != nil {
		return err
	}
	c.macOnly = prot == IntegrityOnly
	if side == "client" {
		c.seal, c.open = c2s, s2c
	} else {
		c.seal, c.open = s2c, c2s
	}
	return nil
}
