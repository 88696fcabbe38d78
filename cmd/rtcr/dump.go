package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/rtcr/rtcr"
)

func runDump(args []string) error {
	fs := newFlags("dump", "--pid PID (--dir DIR | --page-server HOST:PORT --token-file T) [--leave-running] [--track-mem] [--parent DIR [--max-freeze 5ms]] [--log-file PATH] [-v0…-v4]")
	var o rtcr.DumpOptions
	fs.IntVar(&o.Pid, "pid", 0, "process to checkpoint")
	fs.IntVar(&o.Pid, "t", 0, "short for --pid")
	fs.StringVar(&o.Dir, "dir", "", "image directory (created 0700 if missing)")
	fs.StringVar(&o.Dir, "D", "", "short for --dir")
	fs.BoolVar(&o.LeaveRunning, "leave-running", false, "let the process continue after the dump (default: kill it)")
	fs.BoolVar(&o.LeaveRunning, "R", false, "short for --leave-running")
	fs.BoolVar(&o.TrackMem, "track-mem", false, "track the pages the process writes from now on, so that a later dump with --parent copies only those")
	fs.StringVar(&o.Parent, "parent", "", "make an incremental image: only pages written since the image in `DIR` (relative to --dir), dumped with --track-mem")
	fs.StringVar(&o.Parent, "prev-images-dir", "", "same as --parent (CRIU's name)")
	fs.DurationVar(&o.MaxFreeze, "max-freeze", 0, "with --parent: freeze budget; pages written since the parent are copied while the process runs (pre-copy rounds) until the rest fits (e.g. 5ms)")
	var srv rtcr.PageServer
	fs.StringVar(&srv.Addr, "page-server", "", "send the image to the rtcr serve at `HOST:PORT`; the process is killed (or released, -R) only once the server stored it")
	fs.StringVar(&srv.TokenFile, "token-file", "", "the secret shared with the server (`FILE`, mode 0600)")
	fs.StringVar(&srv.Name, "name", "", "the image's name on the server (default pidPID-TIME)")
	tlsFlags(fs, &srv)
	var lf logFlags
	lf.add(fs)
	if err := parse(fs, criuArgs(fs, args)); err != nil {
		return err
	}
	maxFreezeGiven := false
	fs.Visit(func(f *flag.Flag) { maxFreezeGiven = maxFreezeGiven || f.Name == "max-freeze" })
	if maxFreezeGiven && (o.MaxFreeze <= 0 || o.Parent == "") {
		return usagef("--max-freeze must be > 0 and goes with --parent")
	}
	if o.Pid <= 0 {
		return usagef("--pid is required and must be positive")
	}
	if o.Dir == "" && srv.Addr == "" {
		return usagef("--dir or --page-server is required")
	}
	if (srv.Addr == "") != (srv.TokenFile == "") {
		return usagef("--page-server and --token-file go together")
	}
	if srv.Addr != "" && o.Parent != "" {
		return usagef("--page-server sends full images only (no --parent)")
	}
	if o.TrackMem && !o.LeaveRunning {
		return usagef("--track-mem needs --leave-running (-R): a killed process has nothing left to track")
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	o.Logger = log
	ctx, stop := signalContext()
	defer stop()
	var st *rtcr.DumpStats
	var sent *rtcr.SendStats
	if srv.Addr != "" {
		st, sent, err = rtcr.DumpToServer(ctx, o, srv)
	} else {
		st, err = rtcr.Dump(ctx, o)
	}
	if err != nil {
		return lf.failed(log, err)
	}
	where := o.Dir
	if sent != nil {
		where = fmt.Sprintf("%s as %s (%.1f MiB sent in %v)", srv.Addr, sent.Name, float64(sent.Bytes)/(1<<20), sent.Send.Round(1e5))
		if o.Dir != "" {
			where += " and " + o.Dir
		}
	}
	what := "killed"
	if o.LeaveRunning {
		what = "left running"
		if len(st.Exited) > 0 {
			what = fmt.Sprintf("left running, but pid %s exited after the image was complete", strings.Trim(fmt.Sprint(st.Exited), "[]"))
		}
	}
	fmt.Printf("dumped pid %d to %s: %.1f MiB of memory, frozen %v, total %v; process %s\n",
		o.Pid, where, float64(st.PageBytes)/(1<<20), st.Freeze.Round(1e5), st.Total.Round(1e5), what)
	if st.Budget != nil {
		fmt.Println(budgetLine(st.Budget, st.Freeze))
	}
	if st.Parent != "" {
		fmt.Printf("incremental: %.1f MiB unchanged since %s stay there\n", float64(st.ParentPages*4096)/(1<<20), st.Parent)
	}
	if o.TrackMem {
		fmt.Printf("memory tracking goes on: a next dump with --parent naming %s (relative to its --dir) holds only the pages written since\n", o.Dir)
	}
	return nil
}

func runRestore(args []string) error {
	fs := newFlags("restore", "--dir DIR [--lazy] [--inherit-fd FD:ID]… [--no-clock-jump] [--log-file PATH] [-v0…-v4]")
	var o rtcr.RestoreOptions
	fs.StringVar(&o.Dir, "dir", "", "image directory")
	fs.StringVar(&o.Dir, "D", "", "short for --dir")
	fs.BoolVar(&o.TrustImageOwner, "trust-image-owner", false, "accept an image owned by another user; its processes get no more than that user has")
	var inherit inheritFlag
	fs.Var(&inherit, "inherit-fd", "give the restored processes rtcr's fd FD where the image has the external pipe or socket ID (`FD:ID`, the IDs rtcr inspect lists); repeatable; CRIU's fd[FD]:ID works too")
	fs.BoolVar(&o.NoClockJump, "no-clock-jump", false, "for trees started by rtcr run: monotonic clocks continue from the checkpoint without counting the downtime")
	fs.BoolVar(&o.Lazy, "lazy", false, "run at once, private anonymous pages brought in on first touch and in the background; rtcr stays until every page is in (killing it first kills the restored processes)")
	var lf logFlags
	lf.add(fs)
	if err := parse(fs, criuArgs(fs, args)); err != nil {
		return err
	}
	if o.Dir == "" {
		return usagef("--dir is required")
	}
	if err := checkGiven(inherit); err != nil {
		return err
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	o.Logger = log
	o.InheritFDs, o.Warnings = inherit, warnWriter{}
	st, err := rtcr.Restore(o)
	if err != nil {
		return lf.failed(log, err)
	}
	what := fmt.Sprintf("pid %d", st.Pid)
	if st.Program != 0 {
		what = fmt.Sprintf("pid namespace (init pid %d, program pid %d)", st.Pid, st.Program)
	}
	if st.Lazy != nil {
		pr := st.Lazy.Progress()
		fmt.Printf("restored %s from %s lazily: running after %v, %.1f MiB of memory still to come in\n",
			what, o.Dir, st.Total.Round(1e4), float64(pr.Pages-pr.In)*4096/(1<<20))
		allIn, err := st.Lazy.Wait()
		if err != nil {
			return lf.failed(log, err)
		}
		pr = st.Lazy.Progress()
		fmt.Printf("all pages in after %v (%d faults served, %.1f MiB fetched); rtcr let go of %s\n",
			allIn.Round(1e5), pr.Faults, float64(pr.Fetched)/(1<<20), what)
		return nil
	}
	fmt.Printf("restored %s from %s: %.1f MiB of memory in %v\n",
		what, o.Dir, float64(st.PageBytes)/(1<<20), st.Total.Round(1e5))
	return nil
}

// warnWriter prints restore warnings to stderr, each line prefixed
// "rtcr restore: ".
type warnWriter struct{}

func (warnWriter) Write(p []byte) (int, error) {
	if _, err := fmt.Fprintf(os.Stderr, "rtcr restore: %s", p); err != nil {
		return 0, err
	}
	return len(p), nil
}
