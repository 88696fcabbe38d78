package image

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestValidateFanotify: what an image may say of a fanotify group is
// bounded, and only an owner with CAP_SYS_ADMIN (or root) may have one.
func TestValidateFanotify(t *testing.T) {
	good := func() *FD {
		return &FD{Num: 3, Kind: FDFanotify, Fanotify: &Fanotify{Flags: unix.FAN_UNLIMITED_QUEUE, EventFlags: oLargefile,
			Marks: []FanotifyMark{{Kind: FanMarkInode, Path: "/tmp/f", Mask: 0x3b}, {Kind: FanMarkMount, Path: "/tmp", Flags: unix.FAN_MARK_IGNORED_SURV_MODIFY, Mask: 0x40000030, IgnoredMask: 3}}}}
	}
	tests := []struct {
		name   string
		mutate func(fd *FD)
		msg    string
	}{
		{"valid", func(fd *FD) {}, ""},
		{"no group", func(fd *FD) { fd.Fanotify = nil }, "without its group"},
		{"content class", func(fd *FD) { fd.Fanotify.Flags |= unix.FAN_CLASS_CONTENT }, "flags 0x14"},
		{"audit", func(fd *FD) { fd.Fanotify.Flags |= unix.FAN_ENABLE_AUDIT }, "flags 0x50"},
		{"event flags", func(fd *FD) { fd.Fanotify.EventFlags |= unix.O_CREAT }, "event flags"},
		{"mark kind", func(fd *FD) { fd.Fanotify.Marks[0].Kind = "mntns" }, `kind "mntns"`},
		{"relative path", func(fd *FD) { fd.Fanotify.Marks[0].Path = "f" }, "absolute and clean"},
		{"unclean path", func(fd *FD) { fd.Fanotify.Marks[0].Path = "/tmp/../etc" }, "absolute and clean"},
		{"mark flags", func(fd *FD) { fd.Fanotify.Marks[1].Flags = unix.FAN_MARK_FLUSH }, "flags 0x80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd := good()
			tt.mutate(fd)
			err := validateFanotify(fd)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("validateFanotify() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("validateFanotify() = %v, want an error naming %q", err, tt.msg)
			}
		})
	}
	p := &Process{Pid: 10, FDs: []FD{*good()}}
	if err := checkFanotify(p, Owner{Uid: 1000}); err == nil || !strings.Contains(err.Error(), "without CAP_SYS_ADMIN") {
		t.Fatalf("checkFanotify(no capability) = %v, want refused", err)
	}
	if err := checkFanotify(p, Owner{Uid: 1000, Caps: 1 << capSysAdmin}); err != nil {
		t.Fatalf("checkFanotify(CAP_SYS_ADMIN) = %v", err)
	}
	if err := checkFanotify(p, Owner{Root: true}); err != nil {
		t.Fatalf("checkFanotify(root) = %v", err)
	}
}
