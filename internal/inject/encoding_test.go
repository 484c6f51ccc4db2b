package inject

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// TestEncodeStatusMatchesEncodingJSON: the hand-written record encoder writes exactly what encoding/json writes
// for the same entries, whatever the strings hold, and only the present entries.
func TestEncodeStatusMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `q"uote`, `back\slash`, "<html>&", "tab\tnew\nline\x01", "é ü 😀", "\u2028\u2029", "bad\xffutf8", "~/"}
	var all []StatusEntry
	for i, s := range odd {
		all = append(all, StatusEntry{Namespace: s, Name: "n" + s, Generation: int64(i*1000 - 3), Hash: s,
			Revision: int64(i % 3), // 0 (not numbered, left out) for some
			Added:    Added{Containers: []string{s, "c"}, InitContainers: []string{}, Volumes: []string{s}}})
	}
	all = append(all, StatusEntry{Namespace: "ns", Name: "only", Generation: -9223372036854775808, Revision: 9223372036854775807})
	for n := 0; n <= len(all); n++ {
		var records []record
		var want []StatusEntry
		for i, e := range all[:n] {
			present := (i+n)%3 != 1 // every entry is present for some n, absent for others
			records = append(records, record{StatusEntry: e, present: present})
			if present {
				want = append(want, e)
			}
		}
		if want == nil {
			want = []StatusEntry{}
		}
		wantJSON, err := json.Marshal(Status{Templates: want})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeStatus(records); got != string(wantJSON) {
			t.Errorf("%d entries:\ngot  %s\nwant %s", n, got, wantJSON)
		}
	}
}

// TestViewListDecodesLikeASlice: a viewList decodes as json v2 decodes a plain slice: null is nil, [] is empty
// but not nil, long lists (past the stack buffer) keep every element in order, and each element starts from
// zero.
func TestViewListDecodesLikeASlice(t *testing.T) {
	long := make([]string, 3*viewListBuffer+1)
	for i := range long {
		long[i] = fmt.Sprintf(`{"name":"n%d"}`, i)
	}
	for _, in := range []string{`null`, `[]`, `[{"name":"a"},{},{"name":"b"},{"other":1}]`, "[" + strings.Join(long, ",") + "]",
		`{"name":"a"}`, `[{"name":1}]`, `[{"name":"a"},null]`, `[{"name":"a"}`} {
		var want, got struct {
			L []namedView `json:"l"`
		}
		var gotL struct {
			L viewList[namedView] `json:"l"`
		}
		doc := []byte(`{"l":` + in + `}`)
		errWant := jsonv2.Unmarshal(doc, &want)
		errGot := jsonv2.Unmarshal(doc, &gotL)
		got.L = gotL.L
		if fmt.Sprint(errGot) != fmt.Sprint(errWant) {
			t.Errorf("%.40s: error %v, want %v", in, errGot, errWant)
			continue
		}
		if errWant != nil {
			continue
		}
		if !reflect.DeepEqual(got.L, want.L) || (got.L == nil) != (want.L == nil) {
			t.Errorf("%.40s: got %#v, want %#v", in, got.L, want.L)
		}
	}
}
