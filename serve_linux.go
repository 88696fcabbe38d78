package rtcr

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/wire"
	"golang.org/x/sys/unix"
)

// ServeOptions configures Serve (rtcr serve).
type ServeOptions struct {
	// Dir is where images arrive: DIR/NAME, each complete and validated
	// before it appears (created 0700 if missing).
	Dir string
	// TokenFile holds the secret every client must prove it has (mode
	// 0600, at least 16 bytes).
	TokenFile string
	// Logger receives the restores' step lines (see RestoreOptions).
	Logger *slog.Logger
	// Events receives one line per connection event (refused, stored,
	// restored, failed); nil: none.
	Events io.Writer
	// NoClockJump is passed to the restores (RestoreOptions).
	NoClockJump bool
	// TLSCert, TLSKey and TLSCA, when set, require TLS 1.3 with a client
	// certificate signed by TLSCA before the token handshake.
	TLSCert, TLSKey, TLSCA string
	// IntegrityOnly takes frames in the clear, each authenticated
	// (wire.IntegrityOnly), from clients that chose it too, and refuses
	// the others (rtcr serve --wire-integrity-only); default: encrypted.
	IntegrityOnly bool
	// ActionScript is run at ActionPreResume of each migration (an
	// absolute path; see action_linux.go and README "Moving TCP
	// connections"); empty: none.
	ActionScript string
	// LazyRestore restores the copies of pre-copy and one-freeze
	// migrations lazily (rtcr serve --lazy-restore; README "Lazy
	// restore"): a copy runs once its state other than memory is in,
	// its pages follow from the received image, so the downtime no longer
	// grows with its memory. Until every page is in, a killed rtcr serve
	// takes the copy with it (the source is dead by then: the image
	// stays in DIR/NAME for `rtcr restore`).
	LazyRestore bool
}

const (
	// maxConns bounds the connections served at once; more wait in the
	// listen queue.
	maxConns = 8
	// goWait bounds how long a migrated copy is held, restored but not
	// running, for the source to say it is dead.
	goWait = 60 * time.Second
)

// Serve accepts connections on ln until ctx is cancelled. Each client
// must prove it holds the token before anything is read beyond the
// handshake; then it sends one image, received into a staging directory
// beside DIR/NAME, checked as a restore checks it (CheckImage) and only
// then renamed into place. A connection that fails at any point leaves
// no staging directory and no process. Then, as the client asked: the
// image stays (dump --page-server), or is restored in this process's
// namespaces (migrate: held until the source is dead).
func Serve(ctx context.Context, ln net.Listener, opts ServeOptions) error {
	tok, err := wire.ReadToken(opts.TokenFile)
	if err != nil {
		return err
	}
	if opts.ActionScript != "" {
		if err := CheckActionScript(opts.ActionScript); err != nil {
			return err
		}
	}
	inbox, err := wire.OpenInbox(opts.Dir)
	if err != nil {
		return err
	}
	s := &server{tok: tok, inbox: inbox, opts: opts, slots: make(chan struct{}, maxConns)}
	if files := (wire.TLSFiles{Cert: opts.TLSCert, Key: opts.TLSKey, CA: opts.TLSCA}); files.Enabled() {
		if s.tls, err = wire.ServerTLS(files); err != nil {
			return err
		}
	}
	s.event("listening on %s, images in %s", ln.Addr(), inbox.Dir)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
		s.slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.slots }()
			s.handle(ctx, nc)
		}()
	}
}

// server is the state Serve's connections share.
type server struct {
	tok   wire.Token
	tls   *tls.Config // nil: no TLS
	inbox *wire.Inbox
	opts  ServeOptions
	slots chan struct{}
	// restoreMu lets one restore run at a time (their pid checks and
	// stubs would race).
	restoreMu sync.Mutex
	// nameMu guards names, the images being received.
	nameMu sync.Mutex
	names  map[string]bool
}

func (s *server) event(format string, args ...any) {
	if s.opts.Events != nil {
		fmt.Fprintf(s.opts.Events, "rtcr serve: "+format+"\n", args...)
	}
}

// claim reserves name for one connection, refusing a name stored or
// being received.
func (s *server) claim(name string) bool {
	s.nameMu.Lock()
	defer s.nameMu.Unlock()
	if s.names == nil {
		s.names = map[string]bool{}
	}
	if s.names[name] || s.inbox.Exists(name) {
		return false
	}
	s.names[name] = true
	return true
}

func (s *server) release(name string) {
	s.nameMu.Lock()
	defer s.nameMu.Unlock()
	delete(s.names, name)
}

func (s *server) handle(ctx context.Context, nc net.Conn) {
	peer := nc.RemoteAddr().String()
	if s.tls != nil {
		tc := tls.Server(nc, s.tls)
		_ = tc.SetDeadline(time.Now().Add(wire.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			s.event("refused %s: TLS: %v", peer, err)
			return
		}
		nc = tc
	}
	prot := wire.Encrypted
	if s.opts.IntegrityOnly {
		prot = wire.IntegrityOnly
	}
	c, err := wire.ServerWith(nc, s.tok, prot)
	if err != nil {
		s.event("refused %s: %v", peer, err)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetIdle(peerIdle)
	p, err := c.Expect(wire.Open)
	if err != nil {
		s.event("%s: %v", peer, err)
		return
	}
	mode, name, err := wire.ParseOpen(p)
	if err != nil {
		c.SendError(err.Error())
		s.event("%s: %v", peer, err)
		return
	}
	if !s.claim(name) {
		c.SendError(fmt.Sprintf("image %s exists on the server", name))
		s.event("%s: image %s exists, refused", peer, name)
		return
	}
	defer s.release(name)
	path, base, prep, err := s.receive(c, mode, name)
	defer prep.drop()
	if err != nil {
		c.SendError(err.Error()) // best effort: the client may be gone
		s.event("%s: image %s not stored: %v", peer, name, err)
		return
	}
	if migrating(mode) || mode == wire.ModePostCopy {
		s.event("%s: image %s received in %s; restoring it", peer, name, path)
	} else {
		s.event("%s: image %s stored in %s", peer, name, path)
	}
	switch mode {
	case wire.ModeStore:
	case wire.ModePostCopy:
		s.postCopy(c, name, path)
	default:
		s.restore(c, mode, name, path, base, prep)
	}
}

// migrating reports whether mode is a migration's: its image is restored
// from the staging directory, checked by the restore itself (before any
// process exists), and committed to DIR/NAME once its processes are
// restored and held, before the server says ready: the check of a
// received image would otherwise run twice while the source is frozen.
func migrating(mode wire.Mode) bool { return mode == wire.ModeMigrate || mode == wire.ModePreCopy }

// errRefused marks an image that arrived whole but failed its checks.
var errRefused = errors.New("refused")

// receive takes the image into a staging directory, checks it and renames
// it to DIR/name; on any failure the staging directory goes. For a
// migration (migrating) it returns the staging directory, unchecked: see
// restore. A pre-copy migration sends a full image first, checked and
// kept in the staging directory's subdirectory wire.BaseDir: the
// increment that follows names it as its parent, and both go (or stay)
// together. Only a post-copy migration may send an image that leaves its
// private memory with the source; its image too is returned unchecked in
// the staging directory (postCopy). The full image's manifest, read when
// it was checked, is returned with it (its restore need not decode it
// again). With --lazy-restore, the lazy restore's thread and spare
// keepers are started once the full image is in (lazyPrep), returned
// for the restore (the caller drops them).
func (s *server) receive(c *wire.Conn, mode wire.Mode, name string) (string, *readManifest, *lazyPrep, error) {
	if err := c.SendNow(wire.OK, nil); err != nil {
		return "", nil, nil, err
	}
	tmp, err := s.inbox.Stage(name)
	if err != nil {
		return "", nil, nil, err
	}
	committed := false
	defer func() {
		if !committed {
			_ = s.inbox.Remove(tmp)
		}
	}()
	var base *readManifest
	var prep *lazyPrep
	if mode == wire.ModePreCopy {
		if base, err = s.receiveBase(c, name, tmp); err != nil {
			return "", nil, nil, err
		}
		if s.opts.LazyRestore {
			prep = newLazyPrep(base.c, s.opts.Logger)
		}
	}
	receive := c.ReceiveImage
	if mode == wire.ModePostCopy {
		receive = c.ReceiveImageNoSync // removed at the end (postCopy)
	}
	if _, err := receive(tmp); err != nil {
		return "", nil, prep, err
	}
	if migrating(mode) || mode == wire.ModePostCopy {
		// restore's or postCopy's from here; a post-copy image, useless
		// without its source, is never committed.
		committed = true
		return tmp, base, prep, nil
	}
	if _, err := checkImageOpts(RestoreOptions{Dir: tmp}); err != nil {
		return "", nil, nil, fmt.Errorf("image %s %w: %w", name, errRefused, err)
	}
	if err := s.inbox.Commit(tmp, name); err != nil {
		return "", nil, nil, err
	}
	committed = true
	if err := c.SendNow(wire.Stored, nil); err != nil {
		return s.inbox.Path(name), nil, nil, err
	}
	return s.inbox.Path(name), nil, nil, nil
}

// receiveBase takes the full image of a pre-copy migration into
// tmp/wire.BaseDir, checks it and says Stored; it returns the manifest
// it read.
func (s *server) receiveBase(c *wire.Conn, name, tmp string) (*readManifest, error) {
	base := filepath.Join(tmp, wire.BaseDir)
	if err := os.Mkdir(base, 0o700); err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	// The source runs while its full image travels: no deadline but the
	// idle one.
	n, err := c.ReceiveImage(base)
	if err != nil {
		return nil, err
	}
	m, err := checkImageOpts(RestoreOptions{Dir: base})
	if err != nil {
		return nil, fmt.Errorf("image %s (full copy) %w: %w", name, errRefused, err)
	}
	s.event("%s: image %s: full copy stored (%.1f MiB), waiting for the increment", c.Peer(), name, float64(n)/(1<<20))
	return &readManifest{dir: base, c: m}, c.SendNow(wire.Stored, nil)
}

// restore restores the stored image; for a migration the processes are
// held, not running, until the client says its source is dead. A restore
// that fails, or whose source never says it is dead, kills its
// processes; the image is removed when the source runs on (a failed
// restore: the client releases it) and kept when that is unknown.
func (s *server) restore(c *wire.Conn, mode wire.Mode, name, path string, base *readManifest, prep *lazyPrep) {
	peer := c.Peer()
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	held := false
	migrate := migrating(mode)
	opts := RestoreOptions{Dir: path, Logger: s.opts.Logger, NoClockJump: s.opts.NoClockJump, AddressesLater: migrate}
	// A pre-copy migration's full image was checked on arrival
	// (receiveBase), in the server's own staging directory.
	opts.verifiedParents = mode == wire.ModePreCopy
	opts.parent = base
	opts.Lazy = migrate && s.opts.LazyRestore
	if opts.Lazy {
		opts.prep = prep
	}
	var ck *image.Checkpoint
	opts.loaded = func(c *image.Checkpoint) { ck = c }
	if migrate {
		// path is the staging directory: checked by Restore before it
		// made a process, it becomes DIR/name here.
		opts.Hold = func() error {
			if err := s.inbox.Commit(path, name); err != nil {
				return err
			}
			path = s.inbox.Path(name)
			s.event("%s: image %s stored in %s", peer, name, path)
			if err := c.Send(wire.Stored, nil); err != nil {
				return err
			}
			if err := c.SendNow(wire.Ready, nil); err != nil {
				return err
			}
			// From here the source may have read Ready and died.
			held = true
			c.SetIdle(goWait)
			readyAt := time.Now()
			if _, err := c.Await(wire.Go); err != nil {
				return err
			}
			logStep(logger(s.opts.Logger), ck.Processes[0].Pid, "go received", time.Since(readyAt))
			s.preResume(peer, name, path, ck) // the address arrives (netmove_linux.go)
			return nil
		}
	}
	// The confirmation goes as soon as the copy runs, from the restore's
	// tracer thread: before a lazy restore's background copy starts, and
	// before the restore's own clean-up (nothing after it can fail).
	confirmed := false
	opts.running = func(pid, program int) {
		confirmed = true
		_ = c.SendNow(wire.Restored, restoredFrame(pid, program))
	}
	st, err := Restore(opts)
	if err != nil {
		if held {
			s.event("%s: migrated image %s restored but its copy was killed before it ran: %v; the source may be dead too, so the image stays: rtcr restore --dir %s brings it back", peer, name, err, path)
			return
		}
		c.SendError(fmt.Sprintf("restore %s: %v", name, err))
		s.event("%s: restore of %s failed: %v", peer, name, err)
		if migrate {
			_ = s.inbox.Remove(path) // the source runs on: this image is stale
		}
		return
	}
	// The restored root is our child: collect it when it exits.
	// Not before a lazy restore let go: a wait from any thread of rtcr
	// would take the ptrace stops it waits for.
	go func(pid int, lz *LazyRestore) {
		if lz != nil {
			allIn, err := lz.Wait()
			if err != nil {
				s.event("%s: lazy restore of %s: the copy (pid %d) was killed: %v; rtcr restore --dir %s brings it back", peer, name, pid, err, path)
			} else {
				s.event("%s: lazy restore of %s: every page is in after %v", peer, name, allIn.Round(time.Millisecond))
			}
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	}(st.Pid, st.Lazy)
	s.event("%s: image %s restored: pid %d%s", peer, name, st.Pid, programNote(st))
	if !confirmed {
		_ = c.SendNow(wire.Restored, restoredFrame(st.Pid, st.Program))
	}
}

// restoredFrame is the payload of Restored: the root's and the program's
// host pids.
func restoredFrame(pid, program int) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(pid))
	return binary.BigEndian.AppendUint32(p, uint32(program))
}

func programNote(st *RestoreStats) string {
	if st.Program == 0 {
		return ""
	}
	return fmt.Sprintf(" (program pid %d)", st.Program)
}

// CheckImage makes every check Restore makes of the image in dir before
// it creates any process (trust model, manifest checksum and validation,
// this kernel's limits, every page file's CRC-32C, the chain of an
// incremental image), without creating one. Checks of this host's state
// (free pids, files unchanged) are left to the restore.
func CheckImage(dir string) error {
	_, err := checkImageOpts(RestoreOptions{Dir: dir})
	return err
}

// checkImageOpts is CheckImage with the options that admit an image
// (remotePages: a post-copy image); it returns the manifest it checked.
func checkImageOpts(opts RestoreOptions) (*image.Checkpoint, error) {
	c, d, _, closePages, err := loadOnce(opts)
	if err != nil {
		return nil, err
	}
	closePages()
	return c, d.Close()
}
