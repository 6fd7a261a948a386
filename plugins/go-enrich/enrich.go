// go-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in Go.
//
// Validates the event envelope our users send, enriches it and routes it by type. Envelope:
// `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
// optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
// `invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since
// the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
// `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.
//
// The error texts are the Rust handler's. The JSON is encoding/json's: object keys sorted like
// serde_json's, numbers kept as written (json.Number), but syntax errors worded the Go way.
//
// The component glue (canonical ABI, exports) is abi.go; build.sh builds it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Written into every enriched event, the same value as the Rust handler's.
const processedBy = "sluice/json-enrich"

// route is one `route.<prefix>: <sink>` setting.
type route struct{ prefix, sink string }

// routes from `init`; nil until `init` has run.
var routes []route

func initHandler(config []Header) error {
	if routes != nil {
		return errors.New("init called twice")
	}
	parsed := []route{}
	for _, setting := range config {
		prefix, ok := strings.CutPrefix(setting.Name, "route.")
		if !ok || prefix == "" || setting.Value == "" {
			return fmt.Errorf("unknown setting `%s` (expected `route.<event type prefix>: <sink>`)", setting.Name)
		}
		parsed = append(parsed, route{prefix, setting.Value})
	}
	routes = parsed
	return nil
}

func handle(msg Message) ([]Output, error) {
	event, err := parse(msg.Payload)
	if err != nil {
		return nil, err
	}
	obj, ok := event.(map[string]any)
	if !ok {
		return nil, Invalid("envelope must be a JSON object")
	}
	eventType, err := stringField(obj, "event_type")
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"event_id", "version"} {
		if _, err := stringField(obj, name); err != nil {
			return nil, err
		}
	}
	timestamp, err := field(obj, "timestamp")
	if err != nil {
		return nil, err
	}
	switch timestamp.(type) {
	case json.Number, string:
	default:
		return nil, Invalid("envelope field `timestamp` must be a number or a string")
	}
	data, err := field(obj, "data")
	if err != nil {
		return nil, err
	}
	if _, ok := data.(map[string]any); !ok {
		return nil, Invalid("envelope field `data` must be an object")
	}
	value, err := field(obj, "metadata")
	if err != nil {
		return nil, err
	}
	metadata, ok := value.(map[string]any)
	if !ok {
		return nil, Invalid("envelope field `metadata` must be an object")
	}
	if _, err := stringField(metadata, "producer"); err != nil {
		return nil, Invalid("envelope field `metadata.producer` must be a non-empty string")
	}
	for _, optional := range []string{"trace_id", "correlation_id"} {
		if value, present := metadata[optional]; present {
			if _, ok := value.(string); !ok {
				return nil, Invalid(fmt.Sprintf("envelope field `metadata.%s` must be a string", optional))
			}
		}
	}

	obj["processed_at"] = msg.Metadata.ReceivedMs
	obj["processed_by"] = processedBy
	payload, err := encode(obj)
	if err != nil {
		return nil, err
	}
	prefix, _, _ := strings.Cut(eventType, ".")
	out := Output{
		Payload: payload,
		Key:     msg.Key,
		Headers: append(msg.Headers, Header{"event-type", eventType}),
	}
	for _, r := range routes {
		if r.prefix == prefix {
			out.Route = r.sink
			break
		}
	}
	return []Output{out}, nil
}

// parse reads one JSON value, numbers as json.Number so that integers stay exact.
func parse(payload []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var value any
	err := dec.Decode(&value)
	if err == nil {
		if _, trailing := dec.Token(); trailing != io.EOF {
			err = errors.New("trailing characters after the JSON value")
		}
	} else if err == io.EOF {
		err = errors.New("EOF while parsing a value")
	}
	if err != nil {
		return nil, Invalid("payload is not valid JSON: " + err.Error())
	}
	return value, nil
}

// encode writes the event the way serde_json does: no HTML escaping, no trailing newline.
func encode(event map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(event); err != nil {
		return nil, Fatal("cannot encode JSON output: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func field(obj map[string]any, name string) (any, error) {
	value, ok := obj[name]
	if !ok {
		return nil, Invalid(fmt.Sprintf("envelope is missing `%s`", name))
	}
	return value, nil
}

func stringField(obj map[string]any, name string) (string, error) {
	value, err := field(obj, name)
	if err != nil {
		return "", err
	}
	if s, ok := value.(string); ok && s != "" {
		return s, nil
	}
	return "", Invalid(fmt.Sprintf("envelope field `%s` must be a non-empty string", name))
}
