// Package wire is rtcr's transport: one TCP stream between a sender (rtcr
// migrate, rtcr dump --page-server) and rtcr serve, authenticated before
// anything is written or run, carrying an image directory file by file.
//
// Grammar of a connection (C: the client, S: the server; every length is
// bounded before anything is allocated):
//
//	frame   = type:u8 reserved:3×u8(0) length:u32be payload[length]
//	hello   = "RTCRWIRE" version:u32be nonce[32]          (both ways, clear)
//	C → S   hello   (type Hello, exactly 44 bytes)
//	S → C   hello
//	C → S   Auth    HMAC-SHA256(token, "rtcr-wire client" ‖ Ns ‖ Nc)
//	S → C   AuthOK  HMAC-SHA256(token, "rtcr-wire server" ‖ Ns ‖ Nc)
//	        or Error "authentication failed", and the connection closes
//	then every frame is sealed: payload = AES-256-GCM(key of its
//	direction, nonce = frame counter of that direction, additional data =
//	the 8-byte frame header) and length counts the 16-byte tag.
//	IntegrityOnly (both sides opt in; Auth, AuthOK and the keys then use
//	labels ending " integrity-only", so a side that chose otherwise
//	fails the proof and is told why): payload = clear ‖ AES-256-GMAC tag
//	(key of its direction, nonce = type:u8 0:3×u8 counter:u64be,
//	additional data = the clear payload).
//	C → S   Open    mode:u8 name           S → C  OK | Error msg
//	C → S   (File size:u64be name, Data*, End)*, Commit
//	S → C   Stored  (the image was validated and renamed into place) | Error
//	mode restore:  S → C  Restored pid:u32be program:u32be | Error
//	mode migrate:  S → C  Ready (restored, still traced, not running) | Error
//	               (a migration's Stored comes just before Ready: its image
//	               is checked by the restore, before any process exists)
//	               C → S  Go (the source is dead)
//	               S → C  Restored pid program
//	mode pre-copy: C → S  (File, Data*, End)*, Commit   the full image, sent
//	                      while the source runs, into NAME/base
//	               S → C  Stored (the full image was checked) | Error
//	               C → S  (File, Data*, End)*, Commit   the increment whose
//	                      parent is "base", sent while the source is frozen
//	               then as mode migrate: Stored, Ready, Go, Restored
//	mode post-copy: after Stored, the page phase (pages.go): the server
//	               restores the image, which leaves private memory with
//	               the frozen source, runs it at once and asks for pages;
//	               Restored, PagesIn (every page is in), C → S Go
//
// Why not protobuf or gob: the payload is an image whose files already
// have their own checked format (manifest with SHA-256, page files with a
// CRC-32C per MiB); the transport only moves named byte streams, and ten
// frame types with fixed binary fields are simpler to bound than a
// general decoder fed by an unauthenticated peer.
//
// Pipelining (pipe.go): a file's frames are read and
// sealed by one goroutine while another writes the frames before them;
// inside an image the receiver reads and opens frames ahead of its file
// writes. Either way one goroutine does all the counter work, in order.
//
// Integrity: each sealed frame carries a GCM tag under a key only the two
// token holders can derive, and its counter as nonce, so a frame changed,
// dropped, replayed or reordered on the way is refused (a CRC or a plain
// SHA would catch accidents only: whoever changes the bytes can recompute
// it). The token itself never crosses the wire; it must be long enough
// (MinTokenLen) that the challenge, which an eavesdropper sees, cannot be
// used to guess it offline. Everything after the handshake is encrypted.
package wire
