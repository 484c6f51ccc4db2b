package inject

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"gomodules.xyz/jsonpatch/v2"
)

// The direct encoder must mean exactly what encoding/json (which controller-runtime would use on Patches) means.
func TestPatchJSONMeansWhatEncodingJSONMeans(t *testing.T) {
	check := func(t *testing.T, ops []jsonpatch.Operation) {
		t.Helper()
		fast, err := (&Result{Patch: ops}).PatchJSON()
		if err != nil {
			t.Fatal(err)
		}
		slow, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("the direct encoding is not JSON: %v\n%s", err, fast)
		}
		if err := json.Unmarshal(slow, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("direct encoding differs from encoding/json:\n got %s\nwant %s", fast, slow)
		}
	}
	t.Run("every shape the engine emits, odd strings included", func(t *testing.T) {
		check(t, []jsonpatch.Operation{
			add("/metadata", map[string]any{}),
			add("/metadata/labels", map[string]string{"a/b": "<&>", "z": "\"quoted\"\n", "bad": "\xff\xfe"}),
			add("/metadata/annotations/x~1y", "line\nbreak \u2028 \x01"),
			{Operation: "replace", Path: "/metadata/annotations/sidecar.dev~1status", Value: `{"templates":[]}`},
			add("/spec/containers/-", json.RawMessage(`{"name":"c","image":"i"}`)),
			add("/spec/volumes", []json.RawMessage{json.RawMessage(`{"name":"v"}`), json.RawMessage(`{"name":"w"}`)}),
			add("/spec/hostNetwork", true),
			add("/spec/dnsConfig/nameservers", []string{"10.0.0.1"}),
		})
	})
	t.Run("every golden case", func(t *testing.T) {
		for _, c := range loadGoldenCases(t) {
			res, err := Inject(c.req)
			if err != nil || len(res.Patch) == 0 {
				continue // no patch: PatchJSON is nil by design
			}
			check(t, res.Patch)
		}
	})
}

// TestPatchSizedOnce: the patch's operations and its encoding are allocated once at their final size. A
// miscount would change no output, only what every admission allocates, so nothing else would notice it.
func TestPatchSizedOnce(t *testing.T) {
	checked := 0
	for _, c := range allPropertyCases(t) {
		r, err := Inject(c.req)
		if err != nil || len(r.Patch) == 0 {
			continue
		}
		checked++
		if cap(r.Patch) != len(r.Patch) {
			t.Errorf("%s: %d operations in a slice made for %d (the patch is not copied out at its final size)", c.name, len(r.Patch), cap(r.Patch))
		}
		if enc, hint := mustPatchJSON(t, r), patchSizeHint(r.Patch); len(enc) > hint {
			t.Errorf("%s: encoded patch is %d bytes, sized for %d (patchSizeHint undercounts)", c.name, len(enc), hint)
		}
	}
	if checked < 50 {
		t.Fatalf("only %d cases produced a patch", checked)
	}
}

// quote copies printable ASCII without jsontext: it must write what jsontext writes, byte for byte (the goldens
// compare patches as bytes), and fall back to it for everything else.
func TestQuoteWritesWhatJSONTextWrites(t *testing.T) {
	for _, s := range []string{"", "add", "/spec/containers/-", "/metadata/annotations/a~1b", "<&>", "'", " ~",
		"\x7f", "\"", "\\", "tab\there", "line\nbreak", "\x00", "é", "\u2028", "\xff\xfe", "a\"b\\c"} {
		want, err := jsontext.AppendQuote(nil, s)
		if err != nil { // invalid UTF-8: encoding/json's U+FFFD
			want, _ = json.Marshal(s)
		}
		if got := quote(nil, s); string(got) != string(want) {
			t.Errorf("quote(%q) = %s, want %s", s, got, want)
		}
	}
}
