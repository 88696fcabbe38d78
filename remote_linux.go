package rtcr

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/wire"
)

// PageServer names the `rtcr serve` a dump or a migration sends its image
// to (criu --page-server).
type PageServer struct {
	// Addr is the server's HOST:PORT.
	Addr string
	// TokenFile holds the secret shared with the server (mode 0600, at
	// least 16 bytes; see README "Migration").
	TokenFile string
	// Name is the image's name on the server (DIR/NAME there); empty: a
	// name made from the pid and the time.
	Name string
	// Progress, when set, receives one line per stage of the transfer
	// (dumped, sent, ready, running) for the terminal.
	Progress io.Writer
	// TLSCert, TLSKey and TLSCA, when set, wrap the stream in TLS 1.3:
	// this client's certificate and key, and the CA that signed the
	// server's certificate (which must name the host of Addr). The token
	// is still required inside.
	TLSCert, TLSKey, TLSCA string
	// IntegrityOnly sends the frames in the clear, each authenticated
	// (wire.IntegrityOnly: GHASH alone, about half the CPU of AES-GCM,
	// but anyone on the path reads the image); the server must choose it
	// too (rtcr migrate --wire-integrity-only).
	IntegrityOnly bool
	// ActionScript, for Migrate, is run at ActionSourceKilled (an
	// absolute path; see action_linux.go and README "Moving TCP
	// connections"); empty: none.
	ActionScript string
	// NoPreCopy makes Migrate freeze the tree for its whole image, as
	// before pre-copy (rtcr migrate --no-precopy).
	NoPreCopy bool
}

// SendStats reports what went to the server.
type SendStats struct {
	// Name is the image's name on the server.
	Name string
	// Bytes is the file content sent.
	Bytes int64
	// Send is the time from the first byte of the image sent until the
	// server said it stored and validated it (for Migrate, it checks the
	// image in its restore: until the restore had checked it and made
	// its processes).
	Send time.Duration
	// Pid and Program are the restored root's pid on the destination
	// and, for a tree started by `rtcr run`, its program's (Migrate).
	Pid, Program int
	// Downtime is, for Migrate, the time the tree ran nowhere: from its
	// (last) freeze on the source until the destination said its copy
	// runs (the freeze start is taken as DumpStats.Freeze before the
	// destination said ready, a little early: the kill follows).
	Downtime time.Duration
	// Total is, for Migrate, the time from the start until the
	// destination said its copy runs; PreCopy what the pre-copy did
	// (nil without one).
	Total   time.Duration
	PreCopy *PreCopyStats
	// Where says, for Migrate, where the downtime went.
	Where string
}

// peerIdle bounds how long either side waits for the other to send or
// take a frame; a restore on the destination may take longer, see
// restoreWait.
const (
	peerIdle    = 60 * time.Second
	restoreWait = 10 * time.Minute
)

// connect dials srv, authenticates both ways and opens the image name in
// mode; the connection is closed when ctx is cancelled.
func connect(ctx context.Context, srv *PageServer, mode wire.Mode, pid int) (*wire.Conn, func(), error) {
	tok, err := wire.ReadToken(srv.TokenFile)
	if err != nil {
		return nil, nil, err
	}
	if srv.Name == "" {
		srv.Name = fmt.Sprintf("pid%d-%s", pid, time.Now().UTC().Format("20060102T150405.000"))
	}
	if !wire.ValidName(srv.Name) {
		return nil, nil, fmt.Errorf("image name %q: letters, digits, '.', '_', '-' only, at most 64", srv.Name)
	}
	d := net.Dialer{Timeout: wire.HandshakeTimeout}
	nc, err := d.DialContext(ctx, "tcp", srv.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", srv.Addr, err)
	}
	if files := (wire.TLSFiles{Cert: srv.TLSCert, Key: srv.TLSKey, CA: srv.TLSCA}); files.Enabled() {
		cfg, err := wire.ClientTLS(files, srv.Addr)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, wire.HandshakeTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("TLS with %s: %w", srv.Addr, err)
		}
		nc = tc
	}
	prot := wire.Encrypted
	if srv.IntegrityOnly {
		prot = wire.IntegrityOnly
	}
	c, err := wire.ClientWith(nc, tok, prot)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	done := func() { stop(); c.Close() }
	c.SetIdle(peerIdle)
	if err := c.SendNow(wire.Open, wire.OpenRequest(mode, srv.Name)); err != nil {
		done()
		return nil, nil, err
	}
	if _, err := c.Expect(wire.OK); err != nil {
		done()
		return nil, nil, err
	}
	return c, done, nil
}

// openMigration connects to srv in mode (connect) and makes the
// temporary directory the migration's images are written to; closeAll
// removes the directory and closes the connection.
func openMigration(ctx context.Context, srv *PageServer, mode wire.Mode, pid int) (c *wire.Conn, tmp string, closeAll func(), err error) {
	c, done, err := connect(ctx, srv, mode, pid)
	if err != nil {
		return nil, "", nil, fmt.Errorf("migrate %d: %w", pid, err)
	}
	tmp, err = os.MkdirTemp("", "rtcr-migrate-")
	if err != nil {
		done()
		return nil, "", nil, fmt.Errorf("migrate %d: %w", pid, err)
	}
	return c, tmp, func() { os.RemoveAll(tmp); done() }, nil
}

// sendImage sends the image in dir and waits until the server stored it.
func sendImage(c *wire.Conn, dir string, ck *image.Checkpoint, st *SendStats, srv *PageServer) error {
	start := time.Now()
	srv.progress("image complete, sending it to %s", srv.Addr)
	n, err := c.SendCheckpoint(dir, ck, nil)
	st.Bytes = n
	if err != nil {
		return err
	}
	srv.progress("sent %.1f MiB in %v; %s checks it", float64(n)/(1<<20), time.Since(start).Round(time.Millisecond), srv.Addr)
	if _, err := c.Await(wire.Stored); err != nil {
		return err
	}
	st.Send = time.Since(start)
	srv.progress("stored on %s as %s (%v from the first byte)", srv.Addr, srv.Name, st.Send.Round(time.Millisecond))
	return nil
}

// progress writes one line to srv.Progress, if set.
func (srv *PageServer) progress(format string, args ...any) {
	if srv.Progress != nil {
		fmt.Fprintf(srv.Progress, format+"\n", args...)
	}
}

// DumpToServer dumps opts.Pid as Dump does and sends the image to srv
// while the tree is still frozen (opts.Handoff); only once the server has
// stored and validated it is the tree killed (or, with LeaveRunning,
// released). If the server cannot be reached or refuses, the tree is
// released and nothing is killed. Without opts.Dir the image is written
// to a temporary directory first and removed after it was sent.
func DumpToServer(ctx context.Context, opts DumpOptions, srv PageServer) (*DumpStats, *SendStats, error) {
	c, done, err := connect(ctx, &srv, wire.ModeStore, opts.Pid)
	if err != nil {
		return nil, nil, fmt.Errorf("dump %d: %w", opts.Pid, err)
	}
	defer done()
	if opts.Dir == "" {
		tmp, err := os.MkdirTemp("", "rtcr-send-")
		if err != nil {
			return nil, nil, fmt.Errorf("dump %d: %w", opts.Pid, err)
		}
		defer os.RemoveAll(tmp)
		opts.Dir, opts.temporary = filepath.Join(tmp, "image"), true
	}
	st := &SendStats{Name: srv.Name}
	var ck *image.Checkpoint
	opts.committed = func(c *image.Checkpoint) { ck = c }
	opts.Handoff = func(dir string) error { return sendImage(c, dir, ck, st, &srv) }
	ds, err := Dump(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return ds, st, nil
}

// ErrUnconfirmed reports a migration whose source is dead but whose
// destination did not confirm it runs: the server keeps the image, which
// `rtcr restore` brings back if no process runs there (README
// "Migration").
var ErrUnconfirmed = errors.New("the destination did not confirm")

// Migrate moves the tree of opts.Pid to the `rtcr serve` at srv: it
// freezes and dumps the tree, sends the image while the tree stays
// frozen, lets the destination restore it (its processes held before
// they run), and only when the destination is ready kills the source and
// tells the destination to let its copy run. Any failure before the
// destination is ready releases the source, which runs on. opts.Dir and
// opts.Handoff are Migrate's own.
//
// By default the memory goes first while the tree runs (pre-copy, see
// migratePreCopy): a full image, then rounds of the pages written since,
// and the freeze copies and sends only the last of them (opts.MaxFreeze
// is the freeze budget of the rounds; 0: DefaultMigrateFreeze). With
// srv.NoPreCopy the whole image goes in one freeze.
func Migrate(ctx context.Context, opts DumpOptions, srv PageServer) (*DumpStats, *SendStats, error) {
	if err := srv.checkAction(); err != nil {
		return nil, nil, fmt.Errorf("migrate %d: %w", opts.Pid, err)
	}
	if !srv.NoPreCopy {
		return migratePreCopy(ctx, opts, srv)
	}
	start := time.Now()
	c, tmp, closeMigration, err := openMigration(ctx, &srv, wire.ModeMigrate, opts.Pid)
	if err != nil {
		return nil, nil, err
	}
	defer closeMigration()
	opts.Dir, opts.temporary = filepath.Join(tmp, "image"), true
	opts.Parent, opts.MaxFreeze = "", 0
	st := &SendStats{Name: srv.Name}
	srv.progress("connected to %s; freezing and dumping pid %d", srv.Addr, opts.Pid)
	return handOver(ctx, c, opts, &srv, st, start, nil)
}

// handOver makes the dump that ends a migration (opts.Dir set; opts.Parent
// too for a pre-copy): it sends the image while the tree is frozen, waits
// until the destination is ready, lets Dump kill the tree and tells the
// destination to run its copy. A failure before the destination is ready
// leaves the source running. streamed names the page files whose first
// bytes went while the tree ran (pre-copy rounds); those the freeze went
// on writing are finished from there (opts.preUsed), the others sent
// whole.
func handOver(ctx context.Context, c *wire.Conn, opts DumpOptions, srv *PageServer, st *SendStats, start time.Time, streamed map[string]int64) (*DumpStats, *SendStats, error) {
	opts.preUsed = map[string]bool{}
	opts.LeaveRunning, opts.TrackMem = false, false
	ready := false
	var handed, sent, readyAt time.Time
	var ck *image.Checkpoint
	opts.committed = func(c *image.Checkpoint) { ck = c }
	opts.Handoff = func(dir string) error {
		handed = time.Now()
		srv.progress("image complete, sending it to %s", srv.Addr)
		after := map[string]int64{}
		for name, n := range streamed {
			if opts.preUsed[name] {
				after[name] = n
			}
		}
		n, err := c.SendCheckpoint(dir, ck, after)
		st.Bytes = n
		if err != nil {
			return err
		}
		sent = time.Now()
		logStep(logger(opts.Logger), opts.Pid, "send", sent.Sub(handed), "bytes", n)
		srv.progress("sent %.1f MiB in %v; %s checks and restores it (held until the source is gone)",
			float64(n)/(1<<20), sent.Sub(handed).Round(time.Millisecond), srv.Addr)
		// The server checks a migration's image in its restore and
		// says Stored, then Ready, once its processes are held.
		c.SetIdle(restoreWait)
		if _, err := c.Await(wire.Stored); err != nil {
			return err
		}
		st.Send = time.Since(handed)
		if _, err := c.Await(wire.Ready); err != nil {
			return err
		}
		readyAt = time.Now()
		logStep(logger(opts.Logger), opts.Pid, "destination ready", readyAt.Sub(sent))
		ready = true
		return nil
	}
	// SIGKILL is sent to every process of the frozen tree: none runs a
	// user instruction again, so the destination may go before the
	// source's deaths are collected (reaping 1 GiB takes a while), and
	// its confirmation is read then too: the downtime ends when it
	// arrives, not when the source is reaped.
	var goErr, rerr error
	var restored []byte
	var restoredAt time.Time
	goSent := false
	log := logger(opts.Logger)
	confirm := func() {
		c.SetIdle(peerIdle)
		if goErr = c.SendNow(wire.Go, nil); goErr != nil {
			return
		}
		gone := time.Now()
		logStep(log, opts.Pid, "kill and go", gone.Sub(readyAt))
		restored, rerr = c.Await(wire.Restored)
		restoredAt = time.Now()
		logStep(log, opts.Pid, "restored", restoredAt.Sub(gone))
	}
	// Without an action script the source stays frozen, made to die with
	// rtcr, until the confirmation: its exit does not take a core from
	// its copy meanwhile.
	opts.killFrozen = srv.ActionScript == ""
	opts.killed = func() {
		// With an action script the address moves first (afterKill).
		if ready && srv.ActionScript == "" {
			goSent = true
			confirm()
		}
	}
	ds, err := Dump(ctx, opts)
	if !ready {
		if err == nil {
			err = errors.New("the destination was never ready")
		}
		return nil, nil, fmt.Errorf("migrate %d: the source runs on: %w", opts.Pid, err)
	}
	// The handoff returned nil: Dump killed the tree, whatever else it
	// reports. The destination may now let its copy run.
	// The address leaves this host (netmove_linux.go) before the
	// destination is told to go, when an action script moves it.
	src := srv.afterKill(opts.Pid, opts.Dir)
	if !goSent {
		confirm()
	}
	srv.progress("the destination is ready, the source was killed: %s was told to run its copy", srv.Addr)
	if gerr := goErr; gerr != nil {
		return ds, st, fmt.Errorf("migrate %d: the source is dead, telling %s to run its copy failed (%v): %w; if nothing runs there, the image %s kept there can be restored", opts.Pid, srv.Addr, gerr, ErrUnconfirmed, srv.Name)
	}
	p := restored
	if rerr == nil && len(p) != 8 {
		rerr = fmt.Errorf("restored frame of %d bytes: %w", len(p), wire.ErrProtocol)
	}
	if rerr != nil {
		return ds, st, fmt.Errorf("migrate %d: the source is dead, %s did not confirm its copy runs (%v): %w; if nothing runs there, the image %s kept there can be restored", opts.Pid, srv.Addr, rerr, ErrUnconfirmed, srv.Name)
	}
	st.Pid, st.Program = int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:]))
	if ds != nil {
		// The freeze began ds.Freeze before the kill, which follows the
		// handoff's return at once: from there until Restored arrived.
		st.Downtime = restoredAt.Sub(readyAt.Add(-ds.Freeze))
		// Where the downtime went: the freeze until the image was
		// complete, sending it, the destination's check and restore
		// until ready, then the kill, Go and Restored (with an action
		// script, the address's move and the source's reaping too).
		dump := ds.Freeze - readyAt.Sub(handed)
		st.Where = fmt.Sprintf("dump %v, send %v, check and restore %v, kill and go %v",
			dump.Round(time.Millisecond), sent.Sub(handed).Round(time.Millisecond),
			readyAt.Sub(sent).Round(time.Millisecond), restoredAt.Sub(readyAt).Round(time.Millisecond))
	}
	st.Total = time.Since(start)
	srv.progress("running on %s as pid %d: down %v (%s), total %v", srv.Addr, st.Pid, st.Downtime.Round(time.Millisecond), st.Where, st.Total.Round(time.Millisecond))
	if err = src.finish(err); err != nil {
		return ds, st, fmt.Errorf("migrate %d: moved (pid %d on %s), but: %w", opts.Pid, st.Pid, srv.Addr, err)
	}
	return ds, st, nil
}
