package image

import "fmt"

const (
	// maxSysVShm bounds the SysV shared memory segments of one image
	// (the kernel's default shmmni).
	maxSysVShm = 4096
	// maxShmID is the largest shmid (an int).
	maxShmID = 1<<31 - 1
)

// validateSysV checks the SysV shared memory segments of c and the
// mappings that attach them: unique ids and keys, sizes and modes in
// range, a removed segment without a key; every KindSysV mapping names a
// segment, and the mappings of one attachment (an shmat, split by
// mprotect) follow each other with their offsets from 0 to the segment's
// size rounded up to pages; the contents (pages) are only on the first
// attachment, which the segment names.
func validateSysV(c *Checkpoint) error {
	if len(c.SysVShm) > maxSysVShm {
		return fmt.Errorf("%d SysV shared memory segments, at most %d", len(c.SysVShm), maxSysVShm)
	}
	segs := map[int]*SysVShm{}
	keys := map[int32]bool{}
	for i := range c.SysVShm {
		s := &c.SysVShm[i]
		switch {
		case s.ID < 0 || s.ID > maxShmID:
			return fmt.Errorf("SysV shm id %d out of range", s.ID)
		case segs[s.ID] != nil:
			return fmt.Errorf("SysV shm id %d twice", s.ID)
		case s.Size == 0 || s.Size > maxShmSize:
			return fmt.Errorf("SysV shm id %d: size %d out of range 1-%d", s.ID, s.Size, int64(maxShmSize))
		case s.Mode&^0o777 != 0:
			return fmt.Errorf("SysV shm id %d: mode %#o has bits beyond the permissions", s.ID, s.Mode)
		case s.Key != 0 && (s.Removed || keys[s.Key]):
			return fmt.Errorf("SysV shm id %d: key %#x on a removed segment or twice", s.ID, s.Key)
		}
		segs[s.ID] = s
		keys[s.Key] = s.Key != 0
	}
	homes := map[int]bool{}
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			if v.Kind != KindSysV {
				continue
			}
			s := segs[int(v.Inode)]
			if s == nil || v.Inode > maxShmID {
				return fmt.Errorf("pid %d: mapping %#x-%#x: SysV shm id %d is not recorded", p.Pid, v.Start, v.End, v.Inode)
			}
			round := (s.Size + PageSize - 1) / PageSize * PageSize
			if !v.Shared || v.ShareOf != nil || v.Offset%PageSize != 0 || v.Offset >= round || v.End-v.Start > round-v.Offset {
				return fmt.Errorf("pid %d: mapping %#x-%#x at offset %#x of SysV shm id %d (%d bytes): not a shared view inside it", p.Pid, v.Start, v.End, v.Offset, s.ID, s.Size)
			}
			if v.Offset != 0 {
				// Continues the mapping before it.
				if j == 0 || p.VMAs[j-1].Kind != KindSysV || p.VMAs[j-1].Inode != v.Inode || p.VMAs[j-1].End != v.Start ||
					p.VMAs[j-1].Offset+(v.Start-p.VMAs[j-1].Start) != v.Offset {
					return fmt.Errorf("pid %d: mapping %#x-%#x at offset %#x of SysV shm id %d does not continue an attachment", p.Pid, v.Start, v.End, v.Offset, s.ID)
				}
			}
			continued := j+1 < len(p.VMAs) && p.VMAs[j+1].Kind == KindSysV && p.VMAs[j+1].Inode == v.Inode && p.VMAs[j+1].Start == v.End && p.VMAs[j+1].Offset != 0
			if !continued && v.Offset+(v.End-v.Start) != round {
				return fmt.Errorf("pid %d: attachment of SysV shm id %d ends at %#x, short of its %d bytes", p.Pid, s.ID, v.End, round)
			}
			home := p.Pid == s.Pid && v.Start-v.Offset == s.Start
			if v.Offset == 0 && home {
				homes[s.ID] = true
			}
			if len(v.Pages) > 0 && !home {
				return fmt.Errorf("pid %d: mapping %#x-%#x of SysV shm id %d holds pages, which only its first attachment may", p.Pid, v.Start, v.End, s.ID)
			}
		}
	}
	for _, s := range c.SysVShm {
		if !homes[s.ID] {
			return fmt.Errorf("SysV shm id %d: no attachment of pid %d at %#x", s.ID, s.Pid, s.Start)
		}
	}
	return nil
}
