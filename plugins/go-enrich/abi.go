package main

// The component glue: the core exports wit-component expects for the world `enrich` (the
// published `handler` world plus `lifecycle`), written by hand to the canonical ABI because
// there is no wit-bindgen for Go's own compiler. Layouts (offsets in bytes) are in the comments
// next to each reader and writer; they follow CanonicalABI.md for wit/v0.1/plugin.wit.
//
// Memory: the host writes arguments into buffers it gets from cabi_realloc, and reads results
// from buffers this file fills. Both are ordinary Go allocations. Go's GC cannot see the
// addresses stored inside them as i32s, so every such allocation is also kept in `live` until
// the host has read the result and calls the export's cabi_post_ function.

import (
	"errors"
	"unsafe"
)

//go:wasmimport sluice:plugin/log@0.1.0 log
func hostLog(level int32, message string)

// live keeps what the host may still read or has just written reachable for Go's GC.
var live []unsafe.Pointer

// ret is the return area of every export; the host reads it before the next call.
var ret [4]uint32

// alloc returns size zeroed bytes, 8-aligned (the largest alignment in the contract).
func alloc(size uint32) unsafe.Pointer {
	p := unsafe.Pointer(unsafe.SliceData(make([]uint64, (size+7)/8)))
	live = append(live, p)
	return p
}

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	p := alloc(newSize)
	if old != nil {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return p
}

// release lets the GC have the previous call's arguments and results.
func release() {
	clear(live)
	live = live[:0]
}

//go:wasmexport sluice:plugin/lifecycle@0.1.0#init
func exportInit(settings unsafe.Pointer, n uint32) unsafe.Pointer {
	// result<_, string>: disc @0, string @4/@8.
	ret = [4]uint32{}
	if err := initHandler(liftHeaders(settings, n)); err != nil {
		ret[0] = 1
		ret[1], ret[2] = lowerString(err.Error())
	}
	return unsafe.Pointer(&ret)
}

//go:wasmexport cabi_post_sluice:plugin/lifecycle@0.1.0#init
func postInit(unsafe.Pointer) { release() }

//go:wasmexport sluice:plugin/message-handler@0.1.0#handle
func exportHandle(msg unsafe.Pointer) unsafe.Pointer {
	outputs, err := handle(liftMessage(msg))
	lowerResult(unsafe.Pointer(&ret), outputs, err)
	return unsafe.Pointer(&ret)
}

//go:wasmexport cabi_post_sluice:plugin/message-handler@0.1.0#handle
func postHandle(unsafe.Pointer) { release() }

//go:wasmexport sluice:plugin/message-handler@0.1.0#handle-batch
func exportHandleBatch(msgs unsafe.Pointer, n uint32) unsafe.Pointer {
	// list<result<list<output>, handler-error>>: 16-byte elements; the return area is ptr, len.
	results := alloc(16 * n)
	for i := range n {
		outputs, err := handle(liftMessage(unsafe.Add(msgs, 112*i)))
		lowerResult(unsafe.Add(results, 16*i), outputs, err)
	}
	ret[0], ret[1] = addr(results), n
	return unsafe.Pointer(&ret)
}

//go:wasmexport cabi_post_sluice:plugin/message-handler@0.1.0#handle-batch
func postHandleBatch(unsafe.Pointer) { release() }

// --- lifting: host memory -> Go values, without copying -------------------------------------

// liftMessage reads a `message` (112 bytes): id @0/@4, key option @8 (ptr @12, len @16),
// payload @20/@24, headers @28/@32, metadata @40.
func liftMessage(p unsafe.Pointer) Message {
	msg := Message{
		ID:      liftString(p, 0),
		Payload: liftBytes(p, 20),
		Headers: liftHeaders(ptr(p, 28), u32(p, 32)),
		// metadata: source @40/@44, topic @48/@52, partition option<s32> @56 (value @60),
		// offset option<s64> @64 (@72), timestamp-ms option<s64> @80 (@88), received-ms @96,
		// attempt @104.
		Metadata: Metadata{
			Source:     liftString(p, 40),
			Topic:      liftString(p, 48),
			ReceivedMs: int64(u64(p, 96)),
			Attempt:    u32(p, 104),
		},
	}
	if u8(p, 8) == 1 {
		msg.Key = liftBytes(p, 12)
	}
	if u8(p, 56) == 1 {
		partition := int32(u32(p, 60))
		msg.Metadata.Partition = &partition
	}
	if u8(p, 64) == 1 {
		offset := int64(u64(p, 72))
		msg.Metadata.Offset = &offset
	}
	if u8(p, 80) == 1 {
		timestamp := int64(u64(p, 88))
		msg.Metadata.TimestampMs = &timestamp
	}
	return msg
}

// liftHeaders reads list<tuple<string, string>>: 16-byte elements, name @0/@4, value @8/@12.
func liftHeaders(list unsafe.Pointer, n uint32) []Header {
	headers := make([]Header, n)
	for i := range n {
		h := unsafe.Add(list, 16*i)
		headers[i] = Header{liftString(h, 0), liftString(h, 8)}
	}
	return headers
}

// liftBytes reads a list<u8> (ptr, len) at p+off; never nil, as an empty `some` key is a key.
func liftBytes(p unsafe.Pointer, off uintptr) []byte {
	n := u32(p, off+4)
	if n == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(ptr(p, off)), n)
}

func liftString(p unsafe.Pointer, off uintptr) string {
	n := u32(p, off+4)
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(ptr(p, off)), n)
}

// --- lowering: Go values -> memory the host reads ------------------------------------------

// lowerResult writes a result<list<output>, handler-error> (16 bytes) at dst: disc @0; ok: list
// @4/@8; err: handler-error disc @4, reason @8/@12. An error that is not a *HandlerError is
// fatal.
func lowerResult(dst unsafe.Pointer, outputs []Output, err error) {
	words := (*[4]uint32)(dst)
	*words = [4]uint32{}
	if err != nil {
		herr := &HandlerError{KindFatal, err.Error()}
		errors.As(err, &herr)
		words[0], words[1] = 1, uint32(herr.Kind)
		words[2], words[3] = lowerString(herr.Reason)
		return
	}
	// output (40 bytes): payload @0/@4, key option @8 (@12/@16), headers @20/@24,
	// route option<string> @28 (@32/@36).
	list := alloc(40 * uint32(len(outputs)))
	for i, out := range outputs {
		o := (*[10]uint32)(unsafe.Add(list, 40*i))
		o[0], o[1] = lowerBytes(out.Payload)
		if out.Key != nil {
			o[2] = 1
			o[3], o[4] = lowerBytes(out.Key)
		}
		o[5], o[6] = lowerHeaders(out.Headers)
		if out.Route != "" {
			o[7] = 1
			o[8], o[9] = lowerString(out.Route)
		}
	}
	words[1], words[2] = addr(list), uint32(len(outputs))
}

func lowerHeaders(headers []Header) (uint32, uint32) {
	list := alloc(16 * uint32(len(headers)))
	for i, h := range headers {
		e := (*[4]uint32)(unsafe.Add(list, 16*i))
		e[0], e[1] = lowerString(h.Name)
		e[2], e[3] = lowerString(h.Value)
	}
	return addr(list), uint32(len(headers))
}

func lowerString(s string) (uint32, uint32) {
	return lowerBytes(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func lowerBytes(b []byte) (uint32, uint32) {
	if len(b) == 0 {
		return 0, 0
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	live = append(live, p)
	return addr(p), uint32(len(b))
}

// --- raw memory -----------------------------------------------------------------------------

// addr is a Go pointer as the i32 address the host sees (wasm32: the same number).
func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

// ptr reads the i32 address at p+off as a pointer.
func ptr(p unsafe.Pointer, off uintptr) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(nil), u32(p, off))
}

func u8(p unsafe.Pointer, off uintptr) uint8   { return *(*uint8)(unsafe.Add(p, off)) }
func u32(p unsafe.Pointer, off uintptr) uint32 { return *(*uint32)(unsafe.Add(p, off)) }
func u64(p unsafe.Pointer, off uintptr) uint64 { return *(*uint64)(unsafe.Add(p, off)) }

// c-shared: the runtime starts in _initialize (called by the component at instantiation);
// main never runs.
func main() {}
