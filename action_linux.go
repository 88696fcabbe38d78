package rtcr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Action scripts (criu --action-script) let the user act at the moments
// of a migration only they can act on, chiefly moving the service
// address with the process (README "Moving TCP connections"). A script
// is one executable, named on the command line of rtcr migrate or rtcr
// serve, run with RTCR_ACTION naming the moment and RTCR_* variables
// describing the migration; rtcr waits for it, at most ActionTimeout.
// source-killed and pre-resume come after the destination said it is
// ready, so after authentication and after the image was received,
// checked and restored (held); a post-copy's source-frozen comes after
// authentication, before the image is sent: nothing runs for a client
// that did not prove it holds the token.
const (
	// ActionSourceKilled runs in rtcr migrate once the source tree was
	// killed (its connections closed without a packet, the source's
	// network lock dropping their packets) and before the destination
	// is told to let its copy run: remove the address from the source
	// host here.
	ActionSourceKilled = "source-killed"
	// ActionPreResume runs in rtcr serve once the source is dead (the
	// client said go) and before the restored processes run and the
	// restore's network lock goes: add the address here and tell the
	// network (gratuitous ARP, a route, a cloud API).
	ActionPreResume = "pre-resume"
	// ActionSourceFrozen runs in rtcr migrate --lazy (post-copy) once
	// the source tree is frozen (its connections in repair mode, the
	// source's network lock dropping their packets) and before its
	// image is sent: the source stays frozen, serving pages, while the
	// copy runs on the destination, so remove the address from the
	// source host here, as source-killed does for pre-copy.
	ActionSourceFrozen = "source-frozen"
	// ActionSourceResumed runs in rtcr migrate --lazy when a post-copy
	// migration fails after source-frozen ran and the source is about
	// to run on (its connections still in repair mode, its lock still
	// there): bring the address back to the source host here.
	ActionSourceResumed = "source-resumed"
)

// ActionTimeout bounds one run of an action script; a script still
// running then is killed (its whole process group) and counts as
// failed. The migration's downtime includes the scripts.
const ActionTimeout = 30 * time.Second

// actionTimeout is ActionTimeout, shorter in tests.
var actionTimeout = ActionTimeout

// CheckActionScript checks that path can be run as an action script:
// an absolute path to a regular, executable file owned by root or the
// caller and writable by no one else (whoever can change it runs code
// with rtcr's rights).
func CheckActionScript(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("action script %s: give an absolute path", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("action script %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("action script %s: not a regular file", path)
	case st.Mode&0o111 == 0:
		return fmt.Errorf("action script %s: not executable (chmod +x)", path)
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("action script %s: owned by uid %d, neither root nor rtcr's user", path, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("action script %s: writable by group or others (chmod go-w)", path)
	}
	return checkScriptDirs(path)
}

// checkScriptDirs checks the directories above the script (symlinks
// resolved): whoever may replace an entry of one of them can swap the
// script between this check and its run. Each must be owned by root or
// the caller and writable by no one else, unless sticky (/tmp: others
// cannot replace what they do not own).
func checkScriptDirs(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("action script %s: %w", path, err)
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return fmt.Errorf("action script %s: directory %s: %w", path, dir, err)
		}
		switch {
		case st.Uid != 0 && int(st.Uid) != os.Geteuid():
			return fmt.Errorf("action script %s: directory %s owned by uid %d, neither root nor rtcr's user", path, dir, st.Uid)
		case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
			return fmt.Errorf("action script %s: directory %s writable by group or others", path, dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// runAction runs script with RTCR_ACTION=action and env (NAME=VALUE)
// added to rtcr's environment, its output to out, and waits for it at
// most ActionTimeout. Nothing when script is empty.
func runAction(script, action string, env []string, out io.Writer) error {
	if script == "" {
		return nil
	}
	if err := CheckActionScript(script); err != nil {
		return err
	}
	if out == nil {
		out = io.Discard
	}
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, action)
	cmd.Env = append(append(os.Environ(), "RTCR_ACTION="+action), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("action script %s %s: still running after %v, killed", script, action, actionTimeout)
	}
	if err != nil {
		return fmt.Errorf("action script %s %s (after %v): %w", script, action, time.Since(start).Round(time.Millisecond), err)
	}
	return nil
}
