package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/rtcr/rtcr/internal/image"
)

// Mode is what the server does with an image once it is stored.
type Mode uint8

// Modes of an Open request.
const (
	// ModeStore keeps the image (rtcr dump --page-server).
	ModeStore Mode = 1
	// ModeRestore keeps it and restores it at once.
	ModeRestore Mode = 2
	// ModeMigrate keeps it, restores it, and lets it run only after the
	// client says Go (the source is dead).
	ModeMigrate Mode = 3
	// ModePreCopy is ModeMigrate with two images: first a full one, sent
	// while the source runs, received into the subdirectory BaseDir of
	// the image; then an increment whose parent is "base" (the dump's
	// Parent), sent while the source is frozen.
	ModePreCopy Mode = 4
)

// BaseDir is where the full image of a pre-copy migration lives, inside
// the directory of the increment that names it as parent.
const BaseDir = "base"

const (
	// maxFiles bounds the files of one image.
	maxFiles = 1 << 16
	// maxFileSize bounds one file (a page file of a 1 TiB process).
	maxFileSize = 1 << 40
)

var (
	imageNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// fileNameRe admits the files an image holds: the manifest and page
	// files (of this version and earlier ones).
	fileNameRe = regexp.MustCompile(`^(manifest\.img|pages-[0-9a-f]{16}-[0-9]+\.img|pages-[0-9]+\.img)$`)
)

// ValidName reports whether name may name an image on the server: 1 to 64
// letters, digits, '.', '_' or '-', not starting with '.' or '-'.
func ValidName(name string) bool { return imageNameRe.MatchString(name) }

// OpenRequest encodes an Open payload.
func OpenRequest(m Mode, name string) []byte {
	return append([]byte{byte(m)}, name...)
}

// ParseOpen decodes an Open payload.
func ParseOpen(p []byte) (Mode, string, error) {
	if len(p) < 2 {
		return 0, "", fmt.Errorf("open request of %d bytes: %w", len(p), ErrProtocol)
	}
	m, name := Mode(p[0]), string(p[1:])
	if m < ModeStore || m > ModePostCopy {
		return 0, "", fmt.Errorf("open request: unknown mode %d: %w", m, ErrProtocol)
	}
	if !ValidName(name) {
		return 0, "", fmt.Errorf("open request: image name %q: letters, digits, '.', '_', '-' only, at most 64: %w", cleanMsg([]byte(name)), ErrProtocol)
	}
	return m, name, nil
}

// ImageFiles returns the files of the image in dir in the order they are
// sent: its page files, then manifest.img (its commit point, last as on
// disk). The manifest is read and validated first; an incremental image
// is refused (its parents would have to travel too), except the increment
// of a pre-copy migration, whose parent is BaseDir, a full image sent
// before it.
func ImageFiles(dir string) ([]string, error) {
	c, err := image.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	return FilesOf(dir, c)
}

// FilesOf is ImageFiles for the image in dir whose checkpoint, c, is at
// hand already (the dump that just wrote it).
func FilesOf(dir string, c *image.Checkpoint) ([]string, error) {
	if c.Parent != nil && (c.Parent.Dir != BaseDir || c.ChainLen != 1) {
		return nil, fmt.Errorf("image %s is incremental (parent %s): only full images and the increment of a pre-copy migration (parent %q) can be sent", dir, c.Parent.Dir, BaseDir)
	}
	var names []string
	seen := map[string]bool{}
	for _, p := range c.Processes {
		if p.PageFile != "" && !seen[p.PageFile] {
			seen[p.PageFile] = true
			names = append(names, p.PageFile)
		}
	}
	return append(names, image.ManifestName), nil
}

// SendImage sends the files of the image in dir (ImageFiles) and Commit,
// and returns the bytes of file content sent.
func (c *Conn) SendImage(dir string) (int64, error) {
	return c.SendImageAfter(dir, nil)
}

// SendImageAfter is SendImage for an image some of whose page files went
// in part already (SendChunks): streamed[name] bytes of them, which are
// not sent again (a Tail frame ends such a file).
func (c *Conn) SendImageAfter(dir string, streamed map[string]int64) (int64, error) {
	names, err := ImageFiles(dir)
	if err != nil {
		return 0, err
	}
	return c.sendFiles(dir, names, streamed)
}

// SendCheckpoint is SendImageAfter for the image in dir whose checkpoint,
// ck, the caller holds (FilesOf): its manifest is not read back. A nil ck
// is read from dir.
func (c *Conn) SendCheckpoint(dir string, ck *image.Checkpoint, streamed map[string]int64) (int64, error) {
	if ck == nil {
		return c.SendImageAfter(dir, streamed)
	}
	names, err := FilesOf(dir, ck)
	if err != nil {
		return 0, err
	}
	return c.sendFiles(dir, names, streamed)
}

// sendFiles sends the files names of dir, those in streamed after their
// first streamed[name] bytes, and Commit.
func (c *Conn) sendFiles(dir string, names []string, streamed map[string]int64) (int64, error) {
	var total int64
	for _, name := range names {
		var n int64
		var err error
		if from := streamed[name]; from > 0 {
			n, err = c.sendTail(filepath.Join(dir, name), name, from)
		} else {
			n, err = c.sendFile(filepath.Join(dir, name), name)
		}
		total += n
		if err != nil {
			return total, err
		}
	}
	if err := c.SendNow(Commit, nil); err != nil {
		return total, err
	}
	return total, nil
}

func (c *Conn) sendFile(path, name string) (int64, error) {
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
	if err := c.Send(File, append(binary.BigEndian.AppendUint64(nil, uint64(size)), name...)); err != nil {
		return 0, err
	}
	return c.sendBody(f, path, 0, size)
}

// sendBody sends bytes [from, size) of f (at path) as Data frames, then
// End; it returns the bytes sent. A file that shrank or grew meanwhile
// is an error: its size went ahead of it. The frames are read and
// sealed while the ones before them are written (pipeSend).
func (c *Conn) sendBody(f *os.File, path string, from, size int64) (int64, error) {
	off := from // the sealing goroutine's
	sent := from
	err := c.pipeSend(func(p []byte) (Type, int, bool, error) {
		if off == size {
			var b [1]byte
			if k, _ := f.ReadAt(b[:], size); k > 0 {
				return 0, 0, false, fmt.Errorf("send %s: the file grew while it was sent", path)
			}
			return End, 0, true, nil
		}
		n, err := f.ReadAt(p[:min(int64(len(p)), size-off)], off)
		off += int64(n)
		if off < size && (err == nil || err == io.EOF) && n == 0 {
			return 0, 0, false, fmt.Errorf("send %s: the file shrank while it was sent (%d of %d bytes)", path, off, size)
		}
		if err != nil && err != io.EOF {
			return 0, 0, false, fmt.Errorf("send %s: %w", path, err)
		}
		sent = off
		return Data, n, false, nil
	})
	return sent - from, err
}

// ReceiveImage reads File, Data and End frames into files of dir (each
// written atomically, mode 0600, by image.WriteFileAtomic) until Commit,
// and returns the bytes of content received, the frames read and opened
// ahead of the file writes (startReadahead; a failure leaves the
// connection unable to receive). Names outside an image's
// (fileNameRe), a name sent twice, more than maxFiles files, a file
// longer or shorter than it said, and a Commit without manifest.img are
// refused.
func (c *Conn) ReceiveImage(dir string) (int64, error) {
	return c.receiveImage(dir, true)
}

// ReceiveImageNoSync is ReceiveImage without fsyncs (each file is still
// complete or absent): for an image removed once its migration is over
// (post-copy), whose fsyncs were a disk's latency in the downtime.
func (c *Conn) ReceiveImageNoSync(dir string) (int64, error) {
	return c.receiveImage(dir, false)
}

func (c *Conn) receiveImage(dir string, sync bool) (int64, error) {
	seen := map[string]bool{}
	var total int64
	st := &streamed{dir: dir, files: map[string]*partFile{}, noSync: !sync}
	write := image.WriteFileAtomic
	if !sync {
		write = image.WriteFileAtomicNoSync
	}
	defer st.close()
	c.startReadahead()
	defer c.stopReadahead()
	for {
		t, p, err := c.Recv()
		if err != nil {
			return total, err
		}
		switch t {
		case Commit:
			if !seen[image.ManifestName] {
				return total, fmt.Errorf("image from %s: committed without %s: %w", c.peer, image.ManifestName, ErrProtocol)
			}
			return total, nil
		case Chunk:
			if seen[image.ManifestName] {
				return total, fmt.Errorf("image from %s: chunk after the manifest: %w", c.peer, ErrProtocol)
			}
			n, err := st.chunk(p, len(seen)+len(st.files))
			if err != nil {
				return total, fmt.Errorf("image from %s: %w", c.peer, err)
			}
			total += int64(n)
			continue
		case Tail:
			if seen[image.ManifestName] {
				return total, fmt.Errorf("image from %s: tail after the manifest: %w", c.peer, ErrProtocol)
			}
			name, n, err := st.tail(c, p)
			if err != nil {
				return total, fmt.Errorf("image from %s: %w", c.peer, err)
			}
			if seen[name] {
				return total, fmt.Errorf("image from %s: file %q twice: %w", c.peer, name, ErrProtocol)
			}
			seen[name] = true
			total += n
			continue
		case File:
		default:
			return total, fmt.Errorf("image from %s: got %v, want file or commit: %w", c.peer, t, ErrProtocol)
		}
		if len(p) < 9 {
			return total, fmt.Errorf("image from %s: file frame of %d bytes: %w", c.peer, len(p), ErrProtocol)
		}
		size, name := binary.BigEndian.Uint64(p), string(p[8:])
		if !fileNameRe.MatchString(name) || seen[name] || len(seen) >= maxFiles || size > maxFileSize {
			return total, fmt.Errorf("image from %s: file %q (%d bytes, %d files so far) refused: %w", c.peer, cleanMsg([]byte(name)), size, len(seen), ErrProtocol)
		}
		if seen[image.ManifestName] {
			return total, fmt.Errorf("image from %s: file %q after the manifest: %w", c.peer, name, ErrProtocol)
		}
		st.drop(name) // streamed in part, then written anew by the freeze
		seen[name] = true
		err = write(dir, name, func(w io.Writer) error {
			var got uint64
			for {
				t, p, err := c.Recv()
				if err != nil {
					return err
				}
				switch t {
				case Data:
					if got+uint64(len(p)) > size {
						return fmt.Errorf("more than the %d bytes announced: %w", size, ErrProtocol)
					}
					if _, err := w.Write(p); err != nil {
						return err
					}
					got += uint64(len(p))
					total += int64(len(p))
				case End:
					if got != size {
						return fmt.Errorf("%d of %d bytes: %w", got, size, ErrProtocol)
					}
					return nil
				default:
					return fmt.Errorf("got %v inside a file: %w", t, ErrProtocol)
				}
			}
		})
		if err != nil {
			return total, fmt.Errorf("image from %s: %w", c.peer, err)
		}
	}
}
