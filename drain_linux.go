package rtcr

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/netlock"
	"github.com/rtcr/rtcr/internal/tree"
)

// A connection waiting in the accept queue of a listening TCP socket
// cannot be saved (no kernel interface puts one back into a queue), so a
// dump lets the programs of the tree accept what is queued before it
// freezes them: it first installs a drain table (netlock.Drain) that
// holds new connections back, waits until every queue is empty, then
// freezes. A connection that slipped in meanwhile makes it let the tree
// run again and wait once more.
const (
	// drainBound is how long a dump waits, each time, for the queues
	// to empty.
	drainBound = 5 * time.Second
	// drainTries is how often it freezes before it gives up.
	drainTries = 3
	// drainPoll is how often it looks at the queues while waiting.
	drainPoll = 5 * time.Millisecond
)

// drainFrozenHook, when set (by tests), runs after each freeze of a dump
// that drains listeners, before the queues are looked at.
var drainFrozenHook func(try int, table string)

// drainer is the drain table of one dump.
type drainer struct {
	name      string // the table; "" while none is installed
	gen       string
	listeners []files.Listener
	frozenAt  time.Time       // when the freeze that succeeded began
	keeper    *netlock.Keeper // renews the drain table's lease
	// swept receives the outcome of the sweep of stale drain tables,
	// which runs beside the dump (nil: none started).
	swept chan sweepResult
}

// sweepResult is what netlock.SweepDrains did.
type sweepResult struct {
	names []string
	err   error
}

// freezeDrained freezes the tree of root (tree.FreezeTree) once the accept
// queues of its listening TCP sockets are empty. It returns the drain
// table to remove (remove) when the dump ends, whatever happened; on
// error the tree runs. A listener whose queue does not empty within
// drainBound is refused, naming its process, fd, address and count.
// Without the nft command the tree is frozen at once (a queued
// connection is then refused by the fd dump).
func freezeDrained(ctx context.Context, log *slog.Logger, root int, gen string) (*tree.Frozen, *drainer, error) {
	d := &drainer{gen: gen}
	if !netlock.Available() {
		d.frozenAt = time.Now()
		f, err := tree.Freeze(root)
		return f, d, err
	}
	// The tree as it is now (it may fork meanwhile: the check after the
	// freeze covers every process).
	pids, err := tree.Descendants(root)
	if err != nil {
		return nil, d, err
	}
	if d.listeners, err = files.TCPListeners(pids); err != nil {
		return nil, d, err
	}
	start := time.Now()
	for try := 1; ; try++ {
		if len(d.listeners) > 0 {
			if err := d.install(); err != nil {
				return nil, d, err
			}
			if err := d.wait(ctx, log, root); err != nil {
				return nil, d, err
			}
		}
		if try > 1 || len(d.listeners) > 0 {
			// Read again after a wait: the list the freeze starts from
			// must be fresh (a stale pid may belong to another process).
			if pids, err = tree.Descendants(root); err != nil {
				return nil, d, err
			}
		}
		// A tracer thread for each process, started before the freeze.
		ready := tree.StartTracers(len(pids))
		frozenAt := time.Now()
		f, err := tree.FreezeTree(root, pids, ready)
		ready.Close() // those not needed
		if err != nil {
			return nil, d, err
		}
		if drainFrozenHook != nil && d.name != "" {
			drainFrozenHook(try, d.name)
		}
		var live []int
		for _, pid := range f.Order {
			if !f.Zombies[pid] {
				live = append(live, pid)
			}
		}
		now, err := files.QueuedListeners(live)
		if err != nil {
			_ = f.Release()
			return nil, d, err
		}
		if len(now) == 0 {
			if d.name != "" {
				logStep(log, root, "drain", time.Since(start), "listeners", len(d.listeners), "tries", try, "table", "inet "+d.name)
			}
			d.frozenAt = frozenAt
			return f, d, nil
		}
		if err := f.Release(); err != nil {
			return nil, d, fmt.Errorf("release to let %s accept: %w", now[0], err)
		}
		if try == drainTries {
			return nil, d, fmt.Errorf("%s: listening, with %d connections not accepted yet at each of %d freezes (not saved): %w", now[0], now[0].Queued, drainTries, files.ErrUnsupported)
		}
		log.Info("drain: a connection was queued at the freeze, letting the tree accept it", "pid", root, "listener", now[0].String(), "queued", now[0].Queued, "try", try)
		d.add(now)
	}
}

// add adds the listeners of ls not held back yet.
func (d *drainer) add(ls []files.Listener) {
	have := map[uint64]bool{}
	for _, l := range d.listeners {
		have[l.Ino] = true
	}
	for _, l := range ls {
		if !have[l.Ino] {
			d.listeners = append(d.listeners, l)
		}
	}
}

// install installs or replaces the drain table for d's listeners. The
// first time, it starts deleting the drain tables of dumps killed
// before (see remove).
func (d *drainer) install() error {
	if d.swept == nil {
		// Off the dump's path: it only lists tables and deletes those
		// of rtcr processes that are gone.
		d.swept = make(chan sweepResult, 1)
		go func() {
			names, err := netlock.SweepDrains()
			d.swept <- sweepResult{names, err}
		}()
	}
	name := netlock.DrainName(d.gen, os.Getpid())
	addrs := make([]netip.AddrPort, 0, len(d.listeners))
	for _, l := range d.listeners {
		addrs = append(addrs, l.Local)
	}
	if err := netlock.Drain(name, addrs); err != nil {
		return err
	}
	d.name = name
	if d.keeper == nil {
		d.keeper = netlock.Keep(name)
	}
	return nil
}

// wait waits, at most drainBound, until no listener of d has a
// connection queued or a handshake under way. A listener that still has
// connections queued then is refused; handshakes still under way (a
// client gone after its SYN) are not waited for longer: the network lock
// drops the rest of them, and such a client, should it answer after the
// restore, gets a reset.
func (d *drainer) wait(ctx context.Context, log *slog.Logger, root int) error {
	deadline := time.Now().Add(drainBound)
	for {
		if err := files.UpdateQueues(d.listeners); err != nil {
			return err
		}
		busy := -1
		for i, l := range d.listeners {
			if l.Queued > 0 {
				busy = i
				break
			}
			if l.Handshakes > 0 && busy < 0 {
				busy = i
			}
		}
		if busy < 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		if time.Now().After(deadline) {
			l := d.listeners[busy]
			if l.Queued > 0 {
				return fmt.Errorf("%s: listening, with %d connections not accepted yet after %v with new ones held back (the program does not accept them; not saved): %w", l, l.Queued, drainBound, files.ErrUnsupported)
			}
			log.Warn("drain: handshakes still under way, not saved", "pid", root, "listener", l.String(), "handshakes", l.Handshakes)
			return nil
		}
		time.Sleep(drainPoll)
	}
}

// remove deletes the drain table, if one was installed, and reports
// the sweep of stale ones in log (a failed sweep fails no dump).
func (d *drainer) remove(log *slog.Logger, root int) error {
	if d.swept != nil {
		r := <-d.swept
		d.swept = nil
		for _, s := range r.names {
			log.Warn("removed the drain table of a killed dump", "pid", root, "table", "inet "+s)
		}
		if r.err != nil {
			log.Warn("sweeping the drain tables of killed dumps", "pid", root, "err", r.err)
		}
	}
	if d.keeper != nil {
		d.keeper.Stop()
		d.keeper = nil
	}
	if d.name == "" {
		return nil
	}
	if err := netlock.RemoveDrain(d.name); err != nil {
		return err
	}
	d.name = ""
	return nil
}
