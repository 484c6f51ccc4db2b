package inject

import (
	"encoding/json"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
	"gomodules.xyz/jsonpatch/v2"
)

// appendPatch encodes operations as an RFC 6902 document. Every admission pays for this, so the shapes the
// engine emits are written directly: the items a template adds are already compact JSON (encoded once per
// template at Compile), and going through encoding/json would validate and re-compact them per pod. Anything
// else falls back to encoding/json.
func appendPatch(b []byte, ops []jsonpatch.Operation) ([]byte, error) {
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = quote(b, op.Operation)
		b = append(b, `,"path":`...)
		b = quote(b, op.Path)
		if op.Operation != "remove" {
			b = append(b, `,"value":`...)
			var err error
			if b, err = appendValue(b, op.Value); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case json.RawMessage:
		return append(b, v...), nil
	case []json.RawMessage:
		b = append(b, '[')
		for i, r := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, r...)
		}
		return append(b, ']'), nil
	case string:
		return quote(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case map[string]string:
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			b = quote(b, k)
			b = append(b, ':')
			b = quote(b, v[k])
		}
		return append(b, '}'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

// quote appends s as a JSON string. jsontext refuses invalid UTF-8; encoding/json then writes it with U+FFFD,
// as it would have for the whole patch, so the document stays valid JSON.
func quote(b []byte, s string) []byte {
	if out, err := jsontext.AppendQuote(b, s); err == nil {
		return out
	}
	enc, _ := json.Marshal(s) // a string always encodes
	return append(b, enc...)
}

// patchSizeHint estimates the encoded size, to allocate once.
func patchSizeHint(ops []jsonpatch.Operation) int {
	n := 2
	for _, op := range ops {
		n += 40 + len(op.Path)
		switch v := op.Value.(type) {
		case json.RawMessage:
			n += len(v)
		case []json.RawMessage:
			for _, r := range v {
				n += len(r) + 1
			}
		default:
			n += 64
		}
	}
	return n
}
