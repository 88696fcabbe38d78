package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/rtcr/rtcr"
)

func runServe(args []string) error {
	fs := newFlags("serve", "--listen ADDR --dir DIR --token-file T [--tls-cert C --tls-key K --tls-ca CA] [--wire-integrity-only] [--action-script PATH] [--lazy-restore] [--no-clock-jump] [--log-file PATH] [-v0…-v4]")
	var o rtcr.ServeOptions
	var listen string
	fs.StringVar(&listen, "listen", "", "TCP `ADDR` to listen on (HOST:PORT, :PORT)")
	fs.StringVar(&o.Dir, "dir", "", "where images arrive, DIR/NAME (created 0700 if missing)")
	fs.StringVar(&o.TokenFile, "token-file", "", "the secret every client must prove it holds (`FILE`, mode 0600, ≥ 16 bytes)")
	fs.BoolVar(&o.NoClockJump, "no-clock-jump", false, "restores of rtcr run trees: monotonic clocks continue from the checkpoint")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "TLS: this server's certificate (`PEM`); with --tls-key and --tls-ca, clients need a certificate signed by the CA")
	fs.StringVar(&o.TLSKey, "tls-key", "", "TLS: the certificate's key (`PEM`)")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "TLS: the CA clients' certificates must be signed by (`PEM`)")
	fs.StringVar(&o.ActionScript, "action-script", "", "run `PATH` (absolute) with RTCR_ACTION=pre-resume before a migrated copy runs: add its address here (README \"Moving TCP connections\")")
	fs.BoolVar(&o.IntegrityOnly, "wire-integrity-only", false, "frames in the clear, each authenticated (faster; anyone on the path reads the images): clients must choose it too")
	fs.BoolVar(&o.LazyRestore, "lazy-restore", false, "migrated copies run before their memory is in (pages follow from the received image; a killed serve takes such a copy with it)")
	var lf logFlags
	lf.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if listen == "" || o.Dir == "" || o.TokenFile == "" {
		return usagef("--listen, --dir and --token-file are required")
	}
	if o.ActionScript != "" && !filepath.IsAbs(o.ActionScript) {
		return usagef("--action-script needs an absolute path")
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	o.Logger, o.Events = log, os.Stderr
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	if err := rtcr.Serve(ctx, ln, o); err != nil {
		return lf.failed(log, err)
	}
	return nil
}

func runMigrate(args []string) error {
	fs := newFlags("migrate", "--pid PID --to HOST:PORT --token-file T [--name NAME] [--no-precopy | --max-freeze 10ms | --lazy] [--tls-cert C --tls-key K --tls-ca CA] [--wire-integrity-only] [--action-script PATH] [--log-file PATH] [-v0…-v4]")
	var o rtcr.DumpOptions
	var srv rtcr.PageServer
	fs.IntVar(&o.Pid, "pid", 0, "process to move (with its descendants; an rtcr run tree moves whole)")
	fs.IntVar(&o.Pid, "t", 0, "short for --pid")
	fs.StringVar(&srv.Addr, "to", "", "the rtcr serve at `HOST:PORT` that restores it")
	fs.StringVar(&srv.TokenFile, "token-file", "", "the secret shared with the server (`FILE`, mode 0600)")
	fs.StringVar(&srv.Name, "name", "", "the image's name on the server (default pidPID-TIME)")
	fs.BoolVar(&srv.NoPreCopy, "no-precopy", false, "freeze the process for its whole image (no copy while it runs)")
	fs.DurationVar(&o.MaxFreeze, "max-freeze", 0, "pre-copy: rounds of written pages while the process runs until the rest fits this freeze (default 10ms)")
	lazy := fs.Bool("lazy", false, "post-copy: the process runs there at once, its memory follows (the source stays frozen until then)")
	tlsFlags(fs, &srv)
	fs.StringVar(&srv.ActionScript, "action-script", "", "run `PATH` (absolute) with RTCR_ACTION=source-killed once the source is killed (--lazy: source-frozen once it is frozen, source-resumed if it runs on after that): move its address away (README \"Moving TCP connections\")")
	var lf logFlags
	lf.add(fs)
	if err := parse(fs, criuArgs(fs, args)); err != nil {
		return err
	}
	if o.Pid <= 0 || srv.Addr == "" || srv.TokenFile == "" {
		return usagef("--pid, --to and --token-file are required")
	}
	if o.MaxFreeze < 0 || (o.MaxFreeze > 0 && srv.NoPreCopy) {
		return usagef("--max-freeze must be > 0 and goes without --no-precopy")
	}
	if *lazy && (srv.NoPreCopy || o.MaxFreeze > 0) {
		return usagef("--lazy (post-copy) goes without --no-precopy and --max-freeze")
	}
	if srv.ActionScript != "" && !filepath.IsAbs(srv.ActionScript) {
		return usagef("--action-script needs an absolute path")
	}
	if srv.ActionScript != "" {
		if err := rtcr.CheckActionScript(srv.ActionScript); err != nil {
			return err
		}
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	o.Logger = log
	ctx, stop := signalContext()
	defer stop()
	srv.Progress = os.Stdout
	if *lazy {
		return migrateLazy(ctx, o, srv, &lf, log)
	}
	st, sent, err := rtcr.Migrate(ctx, o, srv)
	if err != nil {
		return lf.failed(log, err)
	}
	what := fmt.Sprintf("pid %d", sent.Pid)
	if sent.Program != 0 {
		what = fmt.Sprintf("pid namespace (init pid %d, program pid %d)", sent.Pid, sent.Program)
	}
	if pc := sent.PreCopy; pc != nil {
		fmt.Printf("pre-copy: full image of %.1f MiB (the tree frozen %v to arm, %v at its end; sent in %v while it ran), %d pages copied in round 0 and %d rounds after it (%.1f MiB of the last image sent during its rounds), %d pages in the last freeze\n",
			float64(pc.FullBytes)/(1<<20), pc.ArmFreeze.Round(1e5), pc.FullFreeze.Round(1e5), pc.FullSend.Round(1e5), pc.RoundPages, pc.Rounds, float64(pc.Streamed)/(1<<20), pc.FrozenPages)
	}
	fmt.Printf("migrated pid %d to %s as %s: %.1f MiB sent in %v, frozen %v (until the source was killed), down %v (until the copy ran), total %v, runs there as %s\n",
		o.Pid, srv.Addr, sent.Name, float64(sent.Bytes)/(1<<20), sent.Send.Round(1e5), st.Freeze.Round(1e5), sent.Downtime.Round(1e5), sent.Total.Round(1e5), what)
	return nil
}

// tlsFlags adds the client's TLS options (migrate, dump --page-server).
func tlsFlags(fs *flag.FlagSet, srv *rtcr.PageServer) {
	fs.StringVar(&srv.TLSCert, "tls-cert", "", "TLS: this client's certificate (`PEM`); with --tls-key and --tls-ca")
	fs.BoolVar(&srv.IntegrityOnly, "wire-integrity-only", false, "frames in the clear, each authenticated (faster; anyone on the path reads the image): the server must choose it too")
	fs.StringVar(&srv.TLSKey, "tls-key", "", "TLS: the certificate's key (`PEM`)")
	fs.StringVar(&srv.TLSCA, "tls-ca", "", "TLS: the CA the server's certificate must be signed by (`PEM`)")
}
