package vmaflags

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// The kernel's own type information (/sys/kernel/btf/vmlinux, BTF) gives
// the offsets the iterator program reads at, and the type id of the
// iterator it attaches to. Only what that needs is parsed.

// btfKinds with the size of the data that follows their btf_type.
const (
	kindInt      = 1
	kindPtr      = 2
	kindArray    = 3
	kindStruct   = 4
	kindUnion    = 5
	kindEnum     = 6
	kindFwd      = 7
	kindTypedef  = 8
	kindVolatile = 9
	kindConst    = 10
	kindRestrict = 11
	kindFunc     = 12
	kindProto    = 13
	kindVar      = 14
	kindDatasec  = 15
	kindFloat    = 16
	kindDeclTag  = 17
	kindTypeTag  = 18
	kindEnum64   = 19
)

// btfType is one parsed type: its name, kind, size or referenced type,
// and, for structs and unions, its members.
type btfType struct {
	name    uint32 // offset in the string section
	kind    int
	sizeRef uint32
	members []btfMember
}

// btfMember is a member of a struct or union; off is in bits.
type btfMember struct {
	name uint32
	typ  uint32
	off  uint32
}

// btfSpec is the parsed type section (index: type id; 0 is void).
type btfSpec struct {
	types []btfType
	strs  []byte
}

// is reports whether the string at off is name.
func (s *btfSpec) is(off uint32, name string) bool {
	if uint64(off)+uint64(len(name)) >= uint64(len(s.strs)) {
		return false
	}
	return string(s.strs[off:off+uint32(len(name))]) == name && s.strs[off+uint32(len(name))] == 0
}

// name returns the string at off.
func (s *btfSpec) name(off uint32) string {
	for i := off; i < uint32(len(s.strs)); i++ {
		if s.strs[i] == 0 {
			return string(s.strs[off:i])
		}
	}
	return ""
}

// loadBTF parses the kernel's BTF.
func loadBTF(path string) (*btfSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseBTF(b)
}

// parseBTF parses BTF data b (little endian, as on x86_64).
func parseBTF(b []byte) (*btfSpec, error) {
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint16(b) != 0xeb9f {
		return nil, errors.New("not BTF (bad magic)")
	}
	hdr := le.Uint32(b[4:])
	typeOff, typeLen := le.Uint32(b[8:]), le.Uint32(b[12:])
	strOff, strLen := le.Uint32(b[16:]), le.Uint32(b[20:])
	if uint64(hdr)+uint64(typeOff)+uint64(typeLen) > uint64(len(b)) || uint64(hdr)+uint64(strOff)+uint64(strLen) > uint64(len(b)) {
		return nil, errors.New("BTF sections out of bounds")
	}
	types := b[hdr+typeOff : hdr+typeOff+typeLen]
	strs := b[hdr+strOff : hdr+strOff+strLen]
	spec := &btfSpec{types: make([]btfType, 1, len(types)/16), strs: strs}
	for p := 0; p < len(types); {
		if p+12 > len(types) {
			return nil, errors.New("BTF type truncated")
		}
		info := le.Uint32(types[p+4:])
		t := btfType{name: le.Uint32(types[p:]), kind: int(info>>24) & 0x1f, sizeRef: le.Uint32(types[p+8:])}
		vlen := int(info & 0xffff)
		p += 12
		extra := 0
		switch t.kind {
		case kindInt, kindVar, kindDeclTag:
			extra = 4
		case kindArray:
			extra = 12
		case kindStruct, kindUnion:
			extra = 12 * vlen
			if p+extra > len(types) {
				return nil, errors.New("BTF members truncated")
			}
			bitfield := info>>31 != 0
			for i := 0; i < vlen; i++ {
				m := types[p+12*i:]
				off := le.Uint32(m[8:])
				if bitfield {
					off &= 0xffffff
				}
				t.members = append(t.members, btfMember{name: le.Uint32(m), typ: le.Uint32(m[4:]), off: off})
			}
		case kindEnum, kindProto:
			extra = 8 * vlen
		case kindDatasec, kindEnum64:
			extra = 12 * vlen
		case kindPtr, kindFwd, kindTypedef, kindVolatile, kindConst, kindRestrict, kindFunc, kindFloat, kindTypeTag:
		default:
			return nil, fmt.Errorf("BTF kind %d unknown", t.kind)
		}
		p += extra
		if p > len(types) {
			return nil, errors.New("BTF type data truncated")
		}
		spec.types = append(spec.types, t)
	}
	return spec, nil
}

// find returns the id of the type of kind named name.
func (s *btfSpec) find(kind int, name string) (uint32, error) {
	for id, t := range s.types {
		if t.kind == kind && s.is(t.name, name) && (kind != kindStruct || len(t.members) > 0) {
			return uint32(id), nil
		}
	}
	return 0, fmt.Errorf("BTF has no type %q of kind %d", name, kind)
}

// resolve skips typedefs and qualifiers.
func (s *btfSpec) resolve(id uint32) btfType {
	for n := 0; n < 32 && int(id) < len(s.types); n++ {
		t := s.types[id]
		switch t.kind {
		case kindTypedef, kindVolatile, kindConst, kindRestrict, kindTypeTag:
			id = t.sizeRef
			continue
		}
		return t
	}
	return btfType{}
}

// member returns the byte offset and size of member name of the struct
// id, looking into anonymous structs and unions.
func (s *btfSpec) member(id uint32, name string) (off, size uint32, err error) {
	if off, size, ok := s.memberBits(s.resolve(id), name, 0); ok {
		if off%8 != 0 {
			return 0, 0, fmt.Errorf("BTF member %q is a bitfield", name)
		}
		return off / 8, size, nil
	}
	return 0, 0, fmt.Errorf("BTF type %q has no member %q", s.name(s.resolve(id).name), name)
}

func (s *btfSpec) memberBits(t btfType, name string, base uint32) (uint32, uint32, bool) {
	for _, m := range t.members {
		mt := s.resolve(m.typ)
		if s.is(m.name, name) {
			return base + m.off, s.size(m.typ), true
		}
		if m.name == 0 && (mt.kind == kindStruct || mt.kind == kindUnion) {
			if off, size, ok := s.memberBits(mt, name, base+m.off); ok {
				return off, size, true
			}
		}
	}
	return 0, 0, false
}

// size returns the size in bytes of type id (0 when unknown).
func (s *btfSpec) size(id uint32) uint32 {
	t := s.resolve(id)
	switch t.kind {
	case kindInt, kindStruct, kindUnion, kindEnum, kindEnum64, kindFloat:
		return t.sizeRef
	case kindPtr:
		return 8
	}
	return 0
}
