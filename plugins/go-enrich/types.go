package main

// The contract's records (wit/v0.1/plugin.wit, interface `types`) as Go values. abi.go moves
// them across the component boundary.

// Message is one message handed to the handler.
type Message struct {
	ID string
	// Key is nil when the message has none.
	Key      []byte
	Payload  []byte
	Headers  []Header
	Metadata Metadata
}

// Header is one (name, value) pair; also the shape of an `init` setting.
type Header struct{ Name, Value string }

// Metadata holds read-only facts about where and how a message was received.
type Metadata struct {
	Source, Topic string
	// Partition, Offset and TimestampMs are nil where the broker has none.
	Partition   *int32
	Offset      *int64
	TimestampMs *int64
	// ReceivedMs is the host's receive time, ms since the Unix epoch: the handler's clock.
	ReceivedMs int64
	Attempt    uint32
}

// Output is one message the handler produces.
type Output struct {
	Payload []byte
	// Key is nil for none.
	Key     []byte
	Headers []Header
	// Route names the sink; "" sends to the pipeline's default sink.
	Route string
}

// HandlerError tells the host why a message produced no outputs (WIT `handler-error`).
type HandlerError struct {
	Kind   ErrorKind
	Reason string
}

// ErrorKind is the case of `handler-error`, in the contract's order.
type ErrorKind uint8

const (
	// KindTransient: the host retries with backoff, then dead-letters.
	KindTransient ErrorKind = iota
	// KindFatal: dead-lettered at once.
	KindFatal
	// KindInvalid: the payload is malformed; dead-lettered or discarded by the pipeline's policy.
	KindInvalid
)

func (e *HandlerError) Error() string { return e.Reason }

// Invalid is the error for a malformed payload.
func Invalid(reason string) error { return &HandlerError{KindInvalid, reason} }

// Fatal is the error for a message that will never succeed.
func Fatal(reason string) error { return &HandlerError{KindFatal, reason} }
