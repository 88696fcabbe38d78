package rtcr

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/image"
)

// commitManifest checks the checkpoint c of process pid, records its
// freeze and writes its manifest: the commit point of the dump.
func commitManifest(log *slog.Logger, stage *image.Stage, c *image.Checkpoint, pid int, freeze time.Duration) error {
	manifest := newStepTimer(log, pid)
	if err := c.Validate(); err != nil {
		return fmt.Errorf("dump %d: image about to be written is inconsistent: %w", pid, err)
	}
	c.FreezeNs = int64(freeze)
	if err := stage.WriteManifest(c); err != nil {
		return fmt.Errorf("dump %d: %w", pid, err)
	}
	manifest.done("manifest", "processes", len(c.Processes))
	return nil
}
