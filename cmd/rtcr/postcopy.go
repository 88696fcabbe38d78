package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rtcr/rtcr"
)

// migrateLazy runs `rtcr migrate --lazy` (post-copy).
func migrateLazy(ctx context.Context, o rtcr.DumpOptions, srv rtcr.PageServer, lf *logFlags, log *slog.Logger) error {
	_, sent, pc, err := rtcr.MigrateLazy(ctx, o, srv)
	if err != nil {
		return lf.failed(log, err)
	}
	what := fmt.Sprintf("pid %d", sent.Pid)
	if sent.Program != 0 {
		what = fmt.Sprintf("pid namespace (init pid %d, program pid %d)", sent.Pid, sent.Program)
	}
	fmt.Printf("migrated pid %d to %s by post-copy: down %v (until the copy ran), every page there after %v (%d pages, %d sent), runs there as %s\n",
		o.Pid, srv.Addr, pc.Downtime.Round(1e5), pc.AllIn.Round(1e6), pc.Pages, pc.SentPages, what)
	return nil
}
