package inject

import (
	"encoding/json"
	"maps"
	"slices"
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
	case *json.RawMessage:
		return append(b, *v...), nil
	case *itemList:
		return v.appendJSON(b), nil
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
		for i, k := range slices.Sorted(maps.Keys(v)) {
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
// as it would have for the whole patch, so the document stays valid JSON. The patch's strings are mostly
// paths and names in printable ASCII, which jsontext writes as they are: those are copied without it (its call
// was 7% of the small pod's engine time, BenchmarkInject).
func quote(b []byte, s string) []byte {
	if plainASCII(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	if out, err := jsontext.AppendQuote(b, s); err == nil {
		return out
	}
	enc, _ := json.Marshal(s) // a string always encodes
	return append(b, enc...)
}

// plainASCII reports whether s is printable ASCII without '"' or '\\': a JSON string of it is s in quotes.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// patchSizeHint is the size of the encoded patch, to allocate once: exact for the values appendValue writes
// itself, an estimate for the rare ones encoding/json writes (a doubling of a patch-sized buffer cost more than
// counting).
func patchSizeHint(ops []jsonpatch.Operation) int {
	n := len(`[]`) + max(len(ops)-1, 0) // brackets and commas
	for _, op := range ops {
		n += len(`{"op":,"path":,"value":}`) + quotedSize(op.Operation) + quotedSize(op.Path)
		switch v := op.Value.(type) {
		case json.RawMessage:
			n += len(v)
		case *json.RawMessage:
			n += len(*v)
		case *itemList:
			n += v.size()
		case []json.RawMessage:
			n += len(`[]`) + max(len(v)-1, 0)
			for _, r := range v {
				n += len(r)
			}
		case string:
			n += quotedSize(v)
		case bool:
			n += len("false")
		case map[string]string:
			n += len(`{}`) + max(len(v)-1, 0)
			for k, val := range v {
				n += quotedSize(k) + len(`:`) + quotedSize(val)
			}
		default: // hostAliases and dnsConfig: rare, and small
			n += 128
		}
	}
	return n
}

// quotedSize is the size of s quoted as a JSON string by quote (at most: a control character may take less).
func quotedSize(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			n++
		case c < 0x20:
			n += len(`\u0000`) - 1
		}
	}
	return n
}
