package mem

import (
	"fmt"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// anonName returns the name a program gave anonymous memory v with
// prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME): "[anon:NAME]" on private
// memory, "[anon_shmem:NAME]" on shared; "" for none.
func anonName(v *image.VMA) string {
	if v.Kind != image.KindAnon && v.Kind != image.KindSharedAnon {
		return ""
	}
	for _, prefix := range []string{"[anon:", "[anon_shmem:"} {
		if rest, ok := strings.CutPrefix(v.Name, prefix); ok {
			return strings.TrimSuffix(rest, "]")
		}
	}
	return ""
}

// applyName gives the restored anonymous memory v its name again.
func applyName(r *ptrace.Remote, v *image.VMA) error {
	name := anonName(v)
	if name == "" {
		return nil
	}
	p, err := r.PutString(ptrace.DataOff, name)
	if err != nil {
		return err
	}
	if _, err := r.Syscall(unix.SYS_PRCTL, unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, v.Start, v.End-v.Start, p); err != nil {
		return fmt.Errorf("name the memory %q (PR_SET_VMA_ANON_NAME): %w", name, err)
	}
	return nil
}
