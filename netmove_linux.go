package rtcr

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/netlock"
)

// Moving TCP connections with a migration (README "Moving TCP
// connections"). The order, from the moment the destination holds its
// restored copy (connections in repair mode, under a network lock of its
// own, bound to the service address whether it has it yet or not):
//
//  1. rtcr migrate kills the source: its connections, in repair mode,
//     close without a FIN or a reset, and the source's network lock
//     drops whatever the peers send meanwhile;
//  2. the source-killed action: the address leaves the source host;
//  3. go: rtcr serve runs the pre-resume action (the address arrives on
//     the destination host and the network learns where it is now);
//  4. the destination's connections leave repair mode (a window probe
//     each), its lock goes, the processes run; the peers' retransmitted
//     segments reach them;
//  5. once the destination confirmed, rtcr migrate removes the source's
//     network lock: the sockets it protected are gone, and left in place
//     it would drop the address's packets there for good (a migration
//     back would find its listener unreachable). It is kept when the
//     source-killed action failed (the address may still be there).

// Post-copy (MigrateLazy) moves the address earlier, because the source
// is not killed before its copy runs but stays frozen, serving pages:
//
//  1. the source tree is frozen, its connections in repair mode under
//     its network lock, its image (all but the private memory) complete;
//  2. the source-frozen action: the address leaves the source host. If
//     it fails, the migration stops there (nothing was sent):
//     source-resumed runs and the source runs on;
//  3. the image goes; the destination restores lazily and holds its
//     copy, runs pre-resume (the address arrives), then its connections
//     leave repair mode and the copy runs;
//  4. every page in: the source is killed and its lock removed (finish).
//
// If the migration fails after source-frozen ran (the destination
// refused, the link dropped in the page phase), the source-resumed
// action runs while the source is still frozen, its connections in
// repair mode behind its lock: the address comes back, then the tree
// runs on. The copy on the destination is killed there; see README
// "Moving TCP connections" for what that means for its connections.

// sourceSide is what rtcr migrate knows of the tree it moves, read from
// its image once the tree is killed.
type sourceSide struct {
	lock      string       // the source's network lock, "" none
	addrs     []netip.Addr // local addresses of the tree's sockets
	actionErr error        // the source-killed action's failure
}

// checkAction checks the action script, if any, before anything is
// frozen: once the source is killed a bad script can only fail.
func (srv *PageServer) checkAction() error {
	if srv.ActionScript == "" {
		return nil
	}
	return CheckActionScript(srv.ActionScript)
}

// afterKill reads the image in dir of the killed tree pid and runs the
// source-killed action, if any. Failures are kept for finish: the source
// is dead, so the destination is told to run its copy whatever happens.
func (srv *PageServer) afterKill(pid int, dir string) *sourceSide {
	ss := &sourceSide{}
	c, err := image.ReadManifest(dir)
	if err != nil {
		ss.actionErr = fmt.Errorf("read the image to run the %s action: %w", ActionSourceKilled, err)
		return ss
	}
	ss.lock = c.NetLock
	ss.addrs = files.LocalAddrs(c.Processes)
	if len(ss.addrs) > 0 && srv.ActionScript == "" {
		srv.progress("the tree's sockets are bound to %s: its connections survive only if that address moves to %s now (README \"Moving TCP connections\")", joinAddrs(ss.addrs), srv.Addr)
	}
	ss.actionErr = srv.sourceAction(ActionSourceKilled, pid, dir, ss)
	return ss
}

// sourceAction runs the action script, if any, with action and the
// variables of the source tree pid whose image is in dir.
func (srv *PageServer) sourceAction(action string, pid int, dir string, ss *sourceSide) error {
	if srv.ActionScript == "" {
		return nil
	}
	srv.progress("running %s %s", srv.ActionScript, action)
	env := []string{
		"RTCR_PID=" + strconv.Itoa(pid),
		"RTCR_IMAGE_DIR=" + dir,
		"RTCR_NAME=" + srv.Name,
		"RTCR_DESTINATION=" + srv.Addr,
		"RTCR_ADDRESSES=" + joinAddrs(ss.addrs),
		"RTCR_NETLOCK=" + ss.lock,
	}
	return runAction(srv.ActionScript, action, env, srv.Progress)
}

// sourceFrozen, for a post-copy migration, runs the source-frozen action
// (the address leaves this host) for the frozen tree pid whose image c is
// in dir, before the image is sent. An error stops the migration: the
// caller runs sourceResumed and the tree runs on.
func (srv *PageServer) sourceFrozen(pid int, dir string, c *image.Checkpoint) (*sourceSide, error) {
	ss := &sourceSide{lock: c.NetLock, addrs: files.LocalAddrs(c.Processes)}
	if len(ss.addrs) > 0 && srv.ActionScript == "" {
		srv.progress("the tree's sockets are bound to %s: its connections survive only if that address moves to %s now, before its copy runs there (README \"Moving TCP connections\")", joinAddrs(ss.addrs), srv.Addr)
	}
	return ss, srv.sourceAction(ActionSourceFrozen, pid, dir, ss)
}

// sourceResumed, for a post-copy migration that failed after
// sourceFrozen, runs the source-resumed action (the address comes back)
// while the tree is still frozen; err is the migration's error,
// returned with the action's failure added.
func (srv *PageServer) sourceResumed(pid int, dir string, ss *sourceSide, err error) error {
	if aerr := srv.sourceAction(ActionSourceResumed, pid, dir, ss); aerr != nil {
		return fmt.Errorf("%w; and, the source resuming: %w (bring its address back by hand)", err, aerr)
	}
	return err
}

// finish, once the destination confirmed its copy runs, removes the
// source's network lock, or keeps it and says why; err is the
// migration's error so far, returned with finish's own.
func (ss *sourceSide) finish(err error) error {
	var own error
	switch {
	case ss.actionErr != nil:
		own = ss.actionErr
		if ss.lock != "" {
			own = fmt.Errorf("%w (the source's network lock stays: once the address is gone from this host, `nft delete table inet %s`)", own, ss.lock)
		}
	case ss.lock != "":
		own = netlock.Unlock(ss.lock)
	}
	switch {
	case own == nil:
		return err
	case err == nil:
		return own
	}
	return fmt.Errorf("%w; and: %w", err, own)
}

// preResume runs on the destination once the source is dead (post-copy:
// frozen, its address gone in source-frozen) and before
// the restored copy of the image at path runs: the pre-resume action,
// then a check that every address the copy's sockets are bound to is on
// this host now, warning (in the events) for each that is not.
func (s *server) preResume(peer, name, path string, c *image.Checkpoint) {
	addrs := files.LocalAddrs(c.Processes)
	if s.opts.ActionScript != "" {
		env := []string{
			"RTCR_IMAGE_DIR=" + path,
			"RTCR_NAME=" + name,
			"RTCR_PEER=" + peer,
			"RTCR_ADDRESSES=" + joinAddrs(addrs),
		}
		if err := runAction(s.opts.ActionScript, ActionPreResume, env, s.opts.Events); err != nil {
			s.event("%s: %s: %v (the copy runs anyway: the source is dead or, post-copy, frozen without its address)", peer, name, err)
		}
	}
	for _, a := range missingAddrs(addrs) {
		s.event("%s: %s: warning: address %s of its sockets is not on this host: its connections and listeners get nothing until it is added (README \"Moving TCP connections\")", peer, name, a)
	}
}

// missingAddrs returns those of addrs no interface of this network
// namespace has.
func missingAddrs(addrs []netip.Addr) []netip.Addr {
	if len(addrs) == 0 {
		return nil
	}
	have := map[netip.Addr]bool{}
	if ifas, err := net.InterfaceAddrs(); err == nil {
		for _, ifa := range ifas {
			if ipn, ok := ifa.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(ipn.IP); ok {
					have[a.Unmap()] = true
				}
			}
		}
	}
	var missing []netip.Addr
	for _, a := range addrs {
		if !have[a] {
			missing = append(missing, a)
		}
	}
	return missing
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}
