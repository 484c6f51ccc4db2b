// Package workload reads Kubernetes manifests (Pods and the workloads that carry a pod template) as generic
// JSON, finds the pods inside them and writes patched pods back. It never decodes into typed structs, so fields
// that this build's k8s.io/api does not know are kept as they are. It does no I/O beyond the io.Reader it is
// given; the offline `inject` command drives it.
package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"unicode"

	"github.com/go-json-experiment/json/jsontext"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Document is one document of a YAML or JSON stream.
type Document struct {
	// Index is the document's 1-based position in the stream, counting only documents that hold something:
	// empty documents (a bare `---`, only comments) are skipped and not counted.
	Index int
	// Line is the 1-based line of the stream on which the document starts (1 for a JSON stream's first
	// object; for JSON streams it is the line of the object's opening brace).
	Line int
	// Raw is the document's bytes as read (for YAML, including the `---` line that opened it, if any).
	Raw []byte
	// Object is the document decoded as generic JSON: maps are map[string]any, numbers json.Number.
	// Nil when Err is set.
	Object map[string]any
	// Err is set when the document cannot be decoded (bad YAML or JSON, not an object). The stream's other
	// documents are still returned.
	Err error
}

// Split reads a stream of YAML documents separated by `---` lines, or a stream of JSON objects, and decodes
// each document. Empty documents are dropped. A document that cannot be decoded is returned with Err set, so
// that the caller can report it and carry on with the others; Split itself fails only when r fails.
func Split(r io.Reader) ([]Document, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	var chunks []chunk
	if bytes.HasPrefix(bytes.TrimLeftFunc(data, unicode.IsSpace), []byte("{")) {
		chunks = splitJSON(data)
	} else {
		chunks = splitYAML(data)
	}
	var docs []Document
	for _, c := range chunks {
		obj, err := Decode(c.raw)
		if err == nil && obj == nil {
			continue // empty document
		}
		if err != nil {
			err = &lineError{err: err, offset: c.line - 1}
		}
		docs = append(docs, Document{Index: len(docs) + 1, Line: c.line, Raw: c.raw, Object: obj, Err: err})
	}
	return docs, nil
}

// lineError is a decoding error whose "line N" mentions (the YAML parser counts from the document's first line)
// are counted from the start of the stream.
type lineError struct {
	err    error
	offset int
}

var lineRef = regexp.MustCompile(`\bline (\d+)\b`)

func (e *lineError) Error() string {
	return lineRef.ReplaceAllStringFunc(e.err.Error(), func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+e.offset)
	})
}

func (e *lineError) Unwrap() error { return e.err }

type chunk struct {
	raw  []byte
	line int
}

// splitYAML cuts data at document separators: lines that start with `---` followed by nothing, a space or a
// tab. The separator line stays at the head of the document it opens (YAML allows content after it, e.g.
// `--- {a: 1}`).
func splitYAML(data []byte) []chunk {
	var chunks []chunk
	start, startLine, line := 0, 1, 0
	for off := 0; off < len(data); {
		line++
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		text := bytes.TrimRight(data[off:next], "\r\n")
		if isSeparator(text) && off > start {
			chunks = append(chunks, chunk{raw: data[start:off], line: startLine})
			start, startLine = off, line
		} else if isSeparator(text) {
			startLine = line
		}
		off = next
	}
	if start < len(data) {
		chunks = append(chunks, chunk{raw: data[start:], line: startLine})
	}
	return chunks
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// splitJSON cuts a stream of JSON values. When the stream stops being valid JSON, the rest of it is returned
// as one last chunk, whose decoding then reports the error.
func splitJSON(data []byte) []chunk {
	var chunks []chunk
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		start := int(dec.InputOffset())
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return chunks
		}
		// the value starts after the whitespace that precedes it
		lead := len(data[start:]) - len(bytes.TrimLeftFunc(data[start:], unicode.IsSpace))
		line := 1 + bytes.Count(data[:start+lead], []byte("\n"))
		if err != nil {
			chunks = append(chunks, chunk{raw: bytes.TrimSpace(data[start:]), line: line})
			return chunks
		}
		chunks = append(chunks, chunk{raw: raw, line: line})
	}
}

// Decode decodes one YAML or JSON document into generic JSON: maps are map[string]any and numbers
// json.Number, so that integers of any size and every field are kept. It returns nil, nil for an empty
// document (nothing, only comments, or null). Duplicate keys are an error: which value would win is not
// defined, so the document is ambiguous.
func Decode(raw []byte) (map[string]any, error) {
	var js []byte
	trimmed := bytes.TrimSpace(raw)
	if bytes.HasPrefix(trimmed, []byte("{")) && json.Valid(trimmed) {
		js = trimmed
	} else {
		var err error
		if js, err = yaml.YAMLToJSONStrict(raw); err != nil {
			return nil, fmt.Errorf("cannot decode document: %w", err)
		}
	}
	v, err := decodeJSON(js)
	if err != nil {
		return nil, fmt.Errorf("cannot decode document: %w", err)
	}
	if !bytes.Equal(js, trimmed) { // read as YAML: numbers went through float64
		var doc yaml3.Node
		if yaml3.Unmarshal(raw, &doc) == nil && len(doc.Content) == 1 {
			keepNumbers(v, doc.Content[0])
		}
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return v, nil
	default:
		return nil, fmt.Errorf("document is not an object (a %s)", jsonType(v))
	}
}

// keepNumbers puts back into v, decoded from YAML, the text of every number as the YAML document wrote it: the
// conversion to JSON goes through float64, which turns 12345678901234567890123 into 1.2345678901234568e+22 and
// -0 into 0. Only a plain scalar that is a valid JSON number and that the conversion also read as a number is
// put back; anything else (anchors, merge keys, 0x1F) keeps the conversion's value.
func keepNumbers(v any, n *yaml3.Node) {
	switch v := v.(type) {
	case map[string]any:
		if n.Kind != yaml3.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			child, ok := v[k.Value]
			if !ok {
				continue
			}
			if num, isNum := child.(json.Number); isNum {
				if lit, ok := numberLiteral(val); ok && lit != string(num) {
					v[k.Value] = json.Number(lit)
				}
				continue
			}
			keepNumbers(child, val)
		}
	case []any:
		if n.Kind != yaml3.SequenceNode || len(n.Content) != len(v) {
			return
		}
		for i, child := range v {
			if _, isNum := child.(json.Number); isNum {
				if lit, ok := numberLiteral(n.Content[i]); ok {
					v[i] = json.Number(lit)
				}
				continue
			}
			keepNumbers(child, n.Content[i])
		}
	}
}

// numberLiteral returns the text of a plain YAML scalar that is a JSON number.
func numberLiteral(n *yaml3.Node) (string, bool) {
	if n.Kind != yaml3.ScalarNode || n.Style != 0 || (n.Tag != "!!int" && n.Tag != "!!float") {
		return "", false
	}
	var num json.Number
	if json.Unmarshal([]byte(n.Value), &num) != nil {
		return "", false
	}
	return n.Value, true
}

func decodeJSON(js []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the top-level value")
	}
	// Duplicate keys in JSON: encoding/json keeps the last one silently; refuse like YAML does.
	if err := checkDuplicateKeys(js); err != nil {
		return nil, err
	}
	return v, nil
}

// checkDuplicateKeys fails on an object with a key given twice: jsontext rejects duplicate names (RFC 7493)
// and says which, where.
func checkDuplicateKeys(js []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(js), jsontext.AllowInvalidUTF8(true)) // encoding/json decodes the rest: only duplicates here
	for {
		if _, err := dec.ReadToken(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// Encode writes obj as one YAML document (keys sorted, as kubectl prints them), without a separator. Numbers
// are written exactly as they were read (json.Number): 12345678901234567890123, 1e400, -0 and 1.50 stay what
// they are, where a round trip through float64 would change them.
func Encode(obj map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml3.NewEncoder(&b)
	enc.SetIndent(2)
	enc.CompactSeqIndent() // "- " under its key, as kubectl writes lists
	if err := enc.Encode(yamlNode(obj)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// yamlNode turns generic JSON (as Decode returns it) into a YAML node tree: maps with sorted keys, and every
// scalar tagged, so that a string that looks like a number or a boolean is quoted and a number keeps its text.
func yamlNode(v any) *yaml3.Node {
	switch v := v.(type) {
	case map[string]any:
		n := &yaml3.Node{Kind: yaml3.MappingNode, Tag: "!!map"}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			n.Content = append(n.Content, stringNode(k), yamlNode(v[k]))
		}
		return n
	case []any:
		n := &yaml3.Node{Kind: yaml3.SequenceNode, Tag: "!!seq"}
		for _, e := range v {
			n.Content = append(n.Content, yamlNode(e))
		}
		return n
	case string:
		return stringNode(v)
	case json.Number:
		return scalar("", string(v)) // untagged: written as read, and any YAML reader takes it for a number
	case bool:
		return scalar("!!bool", strconv.FormatBool(v))
	case nil:
		return scalar("!!null", "null")
	}
	// Not produced by Decode; encoded through JSON so that nothing is lost silently.
	js, _ := json.Marshal(v)
	return stringNode(string(js))
}

// stringNode is s as the YAML encoder writes a Go string: quoted when a YAML 1.1 reader (kubectl's) would take
// it for something else ("yes", "on", "1:20", "0777").
func stringNode(s string) *yaml3.Node {
	var n yaml3.Node
	if err := n.Encode(s); err != nil { // a string always encodes
		return scalar("!!str", s)
	}
	return &n
}

func scalar(tag, value string) *yaml3.Node {
	return &yaml3.Node{Kind: yaml3.ScalarNode, Tag: tag, Value: value}
}

// WriteAll writes the objects as a YAML stream, separated by `---` lines.
func WriteAll(w io.Writer, objs ...map[string]any) error {
	bw := bufio.NewWriter(w)
	for i, obj := range objs {
		out, err := Encode(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteString("---\n")
		}
		bw.Write(out)
	}
	return bw.Flush()
}
