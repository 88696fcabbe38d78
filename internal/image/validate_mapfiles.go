package image

import "fmt"

// maxMapFiles bounds the memfds and deleted files one process records for
// its mappings (each is also a mapping: at most maxVMAs).
const maxMapFiles = 4096

// validateMapFiles checks the memfds and deleted files of the tree, held
// by fds and mappings: each record of Process.MapFiles is valid as an fd
// of its kind would be (Num -1); the records of one file (by identity at
// dump) are all of one kind, and only the first of the tree (processes in
// order, a process's fds before its MapFiles) holds its contents, which
// restore creates the file from; every memfd or deleted-file mapping has
// such a record in its process or an earlier one.
func validateMapFiles(procs []Process) error {
	type id struct{ dev, ino uint64 }
	seen := map[id]string{} // identity → kind
	note := func(pid int, fd *FD, what string) error {
		if fd.Kind != FDMemfd && fd.Kind != FDDeleted {
			return nil
		}
		if fd.FileIno == 0 {
			if fd.Kind == FDMemfd {
				return nil // an image of an earlier rtcr: a memfd of its own
			}
			return fmt.Errorf("pid %d: %s: deleted file without an identity", pid, what)
		}
		k := id{fd.FileDev, fd.FileIno}
		if kind, ok := seen[k]; ok {
			if kind != fd.Kind {
				return fmt.Errorf("pid %d: %s: file %d:%d is a %s, was a %s", pid, what, fd.FileDev, fd.FileIno, fd.Kind, kind)
			}
			if len(fd.MemfdData) > 0 || fd.MemfdSeals != 0 {
				return fmt.Errorf("pid %d: %s: file %d:%d holds contents or seals, which only its first record may", pid, what, fd.FileDev, fd.FileIno)
			}
			return nil
		}
		seen[k] = fd.Kind
		return nil
	}
	for i := range procs {
		p := &procs[i]
		for j := range p.FDs {
			if err := note(p.Pid, &p.FDs[j], fmt.Sprintf("fd %d", p.FDs[j].Num)); err != nil {
				return err
			}
		}
		if len(p.MapFiles) > maxMapFiles {
			return fmt.Errorf("pid %d: %d mapped files, at most %d", p.Pid, len(p.MapFiles), maxMapFiles)
		}
		for j := range p.MapFiles {
			fd := &p.MapFiles[j]
			what := fmt.Sprintf("mapped file %d", j)
			if fd.Num != -1 || (fd.Kind != FDMemfd && fd.Kind != FDDeleted) || fd.FileIno == 0 || fd.Shared != 0 ||
				fd.Owner != nil || fd.Offset != 0 {
				return fmt.Errorf("pid %d: %s: kind %q fd %d inode %d: want a memfd or deleted file, fd -1, an identity, nothing else", p.Pid, what, fd.Kind, fd.Num, fd.FileIno)
			}
			if _, ok := seen[id{fd.FileDev, fd.FileIno}]; ok {
				return fmt.Errorf("pid %d: %s: file %d:%d recorded before", p.Pid, what, fd.FileDev, fd.FileIno)
			}
			// The checks of an fd of its kind (as fd 0: -1 is out of
			// range for an fd).
			asFD := *fd
			asFD.Num = 0
			if err := validateFDs([]FD{asFD}); err != nil {
				return fmt.Errorf("pid %d: %s: %w", p.Pid, what, err)
			}
			if err := note(p.Pid, fd, what); err != nil {
				return err
			}
		}
		for _, v := range p.VMAs {
			if v.Kind != KindMemfd && v.Kind != KindDeleted {
				continue
			}
			kind, ok := seen[id{v.Dev, v.Inode}]
			if !ok || kind != v.Kind {
				return fmt.Errorf("pid %d: mapping %#x-%#x of %s %d:%d: no such file recorded in it or before it", p.Pid, v.Start, v.End, v.Kind, v.Dev, v.Inode)
			}
		}
	}
	return nil
}
