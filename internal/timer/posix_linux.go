package timer

import (
	"errors"
	"fmt"
	"slices"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// POSIX timers must come back with their ids: programs keep the timer_t
// that timer_create gave them.
//
// Since Linux 6.15, prctl(PR_TIMER_CREATE_RESTORE_IDS,
// PR_TIMER_CREATE_RESTORE_IDS_ON) makes timer_create read the wanted id
// from its timer_t argument (the one it writes the new id to) for the
// whole process, until PR_TIMER_CREATE_RESTORE_IDS_OFF: EBUSY when the id is
// taken, EINVAL when it is negative. Older kernels fail that prctl with
// EINVAL. There the kernel gives ids from a per-process counter that starts
// at 0 and only goes up (a deleted id is not given out again until the
// counter wraps at INT_MAX), so the fallback creates timers in increasing
// id order and deletes the ones it does not want, like CRIU does. That is
// slow for large ids (one create and one delete per skipped id) and fails
// when the counter has passed an id already.

// restorePosix creates and arms the timers pts in r, with their ids.
func restorePosix(r *ptrace.Remote, pts []image.PosixTimer, linear bool) error {
	if len(pts) == 0 {
		return nil
	}
	sorted := slices.Clone(pts)
	slices.SortFunc(sorted, func(a, b image.PosixTimer) int { return int(a.ID) - int(b.ID) })
	for i, pt := range sorted {
		if pt.ID < 0 {
			return fmt.Errorf("restore POSIX timer %d of %d: negative id", pt.ID, r.Pid)
		}
		if i > 0 && sorted[i-1].ID == pt.ID {
			return fmt.Errorf("restore POSIX timer %d of %d: id saved twice", pt.ID, r.Pid)
		}
	}
	if linear {
		return createLinear(r, sorted)
	}
	_, err := r.Syscall(unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON)
	if errors.Is(err, unix.EINVAL) {
		return createLinear(r, sorted)
	}
	if err != nil {
		return fmt.Errorf("restore POSIX timers of %d: prctl(PR_TIMER_CREATE_RESTORE_IDS, ON): %w", r.Pid, err)
	}
	err = createExplicit(r, sorted)
	_, offErr := r.Syscall(unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_OFF)
	if offErr != nil && err == nil {
		err = fmt.Errorf("restore POSIX timers of %d: prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF): %w", r.Pid, offErr)
	}
	return err
}

// createExplicit creates and arms each timer with its id requested from
// the kernel; PR_TIMER_CREATE_RESTORE_IDS must be on.
func createExplicit(r *ptrace.Remote, pts []image.PosixTimer) error {
	for _, pt := range pts {
		id, err := createPosix(r, pt)
		if err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("%w (id %d is taken)", err, pt.ID)
			}
			return err
		}
		if id != pt.ID {
			return fmt.Errorf("restore POSIX timer %d of %d: the kernel gave id %d", pt.ID, r.Pid, id)
		}
		if err := armPosix(r, pt); err != nil {
			return err
		}
	}
	return nil
}

// createLinear creates and arms the timers pts, sorted by id, by creating
// timers until the kernel's id counter reaches each wanted id, deleting the
// ones in between.
func createLinear(r *ptrace.Remote, pts []image.PosixTimer) error {
	for _, pt := range pts {
		for {
			id, err := createPosix(r, pt)
			if err != nil {
				return err
			}
			if id == pt.ID {
				break
			}
			if _, err := r.Syscall(unix.SYS_TIMER_DELETE, uint64(id)); err != nil {
				return fmt.Errorf("restore POSIX timer %d of %d: delete placeholder timer %d: %w", pt.ID, r.Pid, id, err)
			}
			if id > pt.ID {
				return fmt.Errorf("restore POSIX timer %d of %d: cannot get that id without "+
					"PR_TIMER_CREATE_RESTORE_IDS: the kernel's id counter is at %d already", pt.ID, r.Pid, id)
			}
		}
		if err := armPosix(r, pt); err != nil {
			return err
		}
	}
	return nil
}
