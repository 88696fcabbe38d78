package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Streamed page files (pre-copy): the pages a pre-copy round writes into
// a page file of the image being made are sent at once, while the tree
// runs, as Chunk frames appending to that file on the server; once the
// image is complete, a Tail frame finishes the file with the bytes written
// since, so that the freeze sends only those.
//
//	Chunk  offset:u64be namelen:u8 name bytes     (offset = what was sent of name)
//	Tail   size:u64be streamed:u64be name, then Data*, End  (as File)

// maxChunkData bounds the bytes of one Chunk frame.
const maxChunkData = MaxPayload - 8 - 1 - 64

// SendChunks sends bytes [from, to) of the page file name (read from r)
// as Chunk frames, read and sealed while the ones before them are
// written (pipeSend).
func (c *Conn) SendChunks(r io.ReaderAt, name string, from, to int64) error {
	if len(name) > 64 || !fileNameRe.MatchString(name) || name == image.ManifestName {
		return fmt.Errorf("stream %q: not a page file name", name)
	}
	if from >= to {
		return c.Flush()
	}
	return c.pipeSend(func(p []byte) (Type, int, bool, error) {
		n := int(min(int64(maxChunkData), to-from))
		h := binary.BigEndian.AppendUint64(p[:0], uint64(from))
		h = append(h, byte(len(name)))
		h = append(h, name...)
		k, err := r.ReadAt(p[len(h):len(h)+n], from)
		if k < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, false, fmt.Errorf("stream %s at %d: %w", name, from, err)
		}
		from += int64(n)
		return Chunk, len(h) + n, from == to, nil
	})
}

// streamed are the files of an image being received whose first bytes
// came in Chunk frames.
type streamed struct {
	dir   string
	files map[string]*partFile
	// noSync leaves the fsync of finished files out (ReceiveImageNoSync).
	noSync bool
}

// partFile is one of them: a temporary file ".NAME.part" in the image's
// directory, renamed to NAME once its Tail is received.
type partFile struct {
	f    *os.File
	size int64
}

// chunk appends the bytes of one Chunk frame p to its file and returns
// their count; count is the number of files of the image so far (each
// streamed file counts).
func (s *streamed) chunk(p []byte, count int) (int, error) {
	if len(p) < 10 {
		return 0, fmt.Errorf("chunk frame of %d bytes: %w", len(p), ErrProtocol)
	}
	off, n := binary.BigEndian.Uint64(p), int(p[8])
	if len(p) < 9+n {
		return 0, fmt.Errorf("chunk frame of %d bytes, name of %d: %w", len(p), n, ErrProtocol)
	}
	name, data := string(p[9:9+n]), p[9+n:]
	if !fileNameRe.MatchString(name) || name == image.ManifestName {
		return 0, fmt.Errorf("chunk of %q refused: %w", cleanMsg([]byte(name)), ErrProtocol)
	}
	pf := s.files[name]
	if pf == nil {
		if off != 0 || count >= maxFiles {
			return 0, fmt.Errorf("chunk of %s at %d (%d files so far) refused: %w", name, off, count, ErrProtocol)
		}
		f, err := os.OpenFile(filepath.Join(s.dir, "."+name+".part"), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, fmt.Errorf("chunk of %s: %w", name, err)
		}
		pf = &partFile{f: f}
		s.files[name] = pf
	}
	if int64(off) != pf.size || pf.size+int64(len(data)) > maxFileSize {
		return 0, fmt.Errorf("chunk of %s at %d, %d bytes received: %w", name, off, pf.size, ErrProtocol)
	}
	if _, err := pf.f.Write(data); err != nil {
		return 0, fmt.Errorf("chunk of %s: %w", name, err)
	}
	pf.size += int64(len(data))
	return len(data), nil
}

// tail finishes the streamed file a Tail frame p names with the Data
// frames that follow (until End), fsyncs it and renames it into place;
// it returns the file's name and the bytes received after the chunks.
func (s *streamed) tail(c *Conn, p []byte) (_ string, _ int64, err error) {
	if len(p) < 17 {
		return "", 0, fmt.Errorf("tail frame of %d bytes: %w", len(p), ErrProtocol)
	}
	size, sent, name := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:]), string(p[16:])
	pf := s.files[name]
	if pf == nil || int64(sent) != pf.size || size < sent || size > maxFileSize {
		return "", 0, fmt.Errorf("tail of %q (%d bytes, %d streamed) refused: %w", cleanMsg([]byte(name)), size, sent, ErrProtocol)
	}
	delete(s.files, name)
	part := filepath.Join(s.dir, "."+name+".part")
	defer pf.f.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(part) // close no longer knows it
		}
	}()
	got := sent
	for {
		t, p, err := c.Recv()
		if err != nil {
			return "", 0, err
		}
		if t == End {
			break
		}
		if t != Data {
			return "", 0, fmt.Errorf("got %v inside %s: %w", t, name, ErrProtocol)
		}
		if got+uint64(len(p)) > size {
			return "", 0, fmt.Errorf("%s: more than the %d bytes announced: %w", name, size, ErrProtocol)
		}
		if _, err := pf.f.Write(p); err != nil {
			return "", 0, fmt.Errorf("%s: %w", name, err)
		}
		got += uint64(len(p))
	}
	if got != size {
		return "", 0, fmt.Errorf("%s: %d of %d bytes: %w", name, got, size, ErrProtocol)
	}
	if !s.noSync {
		if err := pf.f.Sync(); err != nil {
			return "", 0, fmt.Errorf("%s: fsync: %w", name, err)
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, part, unix.AT_FDCWD, filepath.Join(s.dir, name), unix.RENAME_NOREPLACE); err != nil {
		return "", 0, fmt.Errorf("%s: rename: %w", name, err)
	}
	return name, int64(size - sent), nil
}

// drop removes the streamed file name, if any: the whole file follows.
func (s *streamed) drop(name string) {
	if pf := s.files[name]; pf != nil {
		pf.f.Close()
		_ = os.Remove(filepath.Join(s.dir, "."+name+".part"))
		delete(s.files, name)
	}
}

// close removes the streamed files never finished (a process that left
// the image, or a failed transfer).
func (s *streamed) close() {
	for name, pf := range s.files {
		pf.f.Close()
		_ = os.Remove(filepath.Join(s.dir, "."+name+".part"))
	}
	s.files = nil
}

// sendTail sends the file at path, whose first from bytes went as Chunk
// frames, as a Tail and its remaining bytes.
func (c *Conn) sendTail(path, name string, from int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size < from {
		return 0, fmt.Errorf("send %s: %d bytes, %d of them streamed already", path, size, from)
	}
	p := binary.BigEndian.AppendUint64(nil, uint64(size))
	p = binary.BigEndian.AppendUint64(p, uint64(from))
	if err := c.Send(Tail, append(p, name...)); err != nil {
		return 0, err
	}
	return c.sendBody(f, path, from, size)
}
