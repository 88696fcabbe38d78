package rtcr

import (
	"fmt"
	"log/slog"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
)

// externals returns the fd Restorer of a restore, prepared for the
// external objects of c with opts.InheritFDs (checked before any process
// exists), its warnings going to the log and opts.Warnings.
func externals(c *image.Checkpoint, opts RestoreOptions, log *slog.Logger) (*files.Restorer, error) {
	inherit := map[string]int{}
	for _, in := range opts.InheritFDs {
		if old, ok := inherit[in.ID]; ok {
			return nil, fmt.Errorf("--inherit-fd %d:%s: %s is inherited from fd %d already", in.Fd, in.ID, in.ID, old)
		}
		inherit[in.ID] = in.Fd
	}
	warn := func(pid, fd int, id, msg string) {
		log.Warn(msg, "pid", pid, "fd", fd, "id", id)
		if opts.Warnings != nil {
			fmt.Fprintf(opts.Warnings, "warning: pid %d fd %d (%s): %s\n", pid, fd, id, msg)
		}
	}
	rs := files.NewRestorer()
	if err := rs.Externals(c.Processes, inherit, warn); err != nil {
		return nil, err
	}
	return rs, nil
}
