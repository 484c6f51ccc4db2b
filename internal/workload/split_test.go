package workload

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name  string
		input string
		// want lists the documents: their kind (or "error: <substring>"), in order; indexes are 1, 2, ...
		want  []string
		lines []int // the line each document starts on; unchecked when nil
	}{
		{
			name:  "a single YAML document is one document",
			input: "apiVersion: v1\nkind: Pod\n",
			want:  []string{"Pod"},
			lines: []int{1},
		},
		{
			name:  "documents separated by --- are split in order",
			input: "kind: Pod\n---\nkind: Deployment\n---\nkind: Job\n",
			want:  []string{"Pod", "Deployment", "Job"},
			lines: []int{1, 2, 4},
		},
		{
			name:  "empty documents, comment-only documents and a leading --- are skipped and not counted",
			input: "---\n---\n# only a comment\n---\n\n---\nkind: Pod\n--- # trailing comment\n---\nkind: Job\n---\n",
			want:  []string{"Pod", "Job"},
			lines: []int{6, 9},
		},
		{
			name:  "a separator may carry the document's content on the same line",
			input: "--- {kind: Pod}\n--- {kind: Job}\n",
			want:  []string{"Pod", "Job"},
		},
		{
			name:  "CRLF line endings and a byte order mark are accepted",
			input: "\xef\xbb\xbfkind: Pod\r\n---\r\nkind: Job\r\n",
			want:  []string{"Pod", "Job"},
		},
		{
			name:  "a line that merely starts with --- inside a block scalar is not a separator",
			input: "kind: ConfigMap\ndata:\n  a: |\n    ---x\n    y\n",
			want:  []string{"ConfigMap"},
		},
		{
			name:  "a stream of JSON objects is split into one document per object",
			input: "{\"kind\": \"Pod\"}\n{\"kind\": \"Deployment\"}\n\n{\"kind\": \"Job\"}",
			want:  []string{"Pod", "Deployment", "Job"},
			lines: []int{1, 2, 4},
		},
		{
			name:  "a pretty-printed JSON object is one document",
			input: "\n  {\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"a\"}\n}\n",
			want:  []string{"Pod"},
			lines: []int{2},
		},
		{
			name:  "a bad YAML document is reported with its index and the documents around it are kept",
			input: "kind: Pod\n---\nkind: [unclosed\n---\nkind: Job\n",
			want:  []string{"Pod", "error: cannot decode document", "Job"},
		},
		{
			name:  "a JSON stream that turns invalid ends with one document carrying the error",
			input: "{\"kind\": \"Pod\"}\n{\"kind\": \n",
			want:  []string{"Pod", "error: cannot decode document"},
		},
		{
			name:  "a document that is a list, not an object, is an error",
			input: "- a\n- b\n---\nkind: Pod\n",
			want:  []string{"error: document is not an object (a list)", "Pod"},
		},
		{
			name:  "a YAML key given twice is an error, not a silent choice",
			input: "kind: Pod\nkind: Job\n",
			want:  []string{"error: already set"},
		},
		{
			name:  "a JSON key given twice is an error too",
			input: `{"kind": "Pod", "spec": {"a": 1, "a": 2}}`,
			want:  []string{`error: duplicate object member name "a"`},
		},
		{
			name:  "an empty object is a document (without a kind), as kubectl sees it",
			input: "{}\n",
			want:  []string{""},
		},
		{
			name:  "an empty stream has no documents",
			input: "",
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Split(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			var got []string
			for i, d := range docs {
				if d.Index != i+1 {
					t.Errorf("document %d has Index %d", i+1, d.Index)
				}
				if d.Err != nil {
					got = append(got, "error: "+d.Err.Error())
					continue
				}
				kind, _ := d.Object["kind"].(string)
				got = append(got, kind)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got documents %q, want %q", got, tt.want)
			}
			for i := range got {
				w := tt.want[i]
				if strings.HasPrefix(w, "error: ") {
					if !strings.HasPrefix(got[i], "error: ") || !strings.Contains(got[i], strings.TrimPrefix(w, "error: ")) {
						t.Errorf("document %d: got %q, want an error containing %q", i+1, got[i], strings.TrimPrefix(w, "error: "))
					}
				} else if got[i] != w {
					t.Errorf("document %d: got %q, want %q", i+1, got[i], w)
				}
			}
			if tt.lines != nil {
				for i, d := range docs {
					if i < len(tt.lines) && d.Line != tt.lines[i] {
						t.Errorf("document %d starts on line %d, want %d", i+1, d.Line, tt.lines[i])
					}
				}
			}
		})
	}
}

func TestSplitKeepsEachDocumentsRawBytes(t *testing.T) {
	docs, err := Split(strings.NewReader("kind: Pod # first\n---\nkind: Job\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(docs[0].Raw); got != "kind: Pod # first\n" {
		t.Errorf("raw of document 1 = %q", got)
	}
	if got := string(docs[1].Raw); got != "---\nkind: Job\n" {
		t.Errorf("raw of document 2 = %q", got)
	}
}

func TestSplitFailsOnlyWhenTheReaderFails(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Split(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("Split of a failing reader = %v, want %v", err, boom)
	}
}

func TestDecodeKeepsNumbersAndUnknownFieldsExactly(t *testing.T) {
	obj, err := Decode([]byte("spec:\n  big: 9007199254740993\n  ratio: 0.5\n  someFutureField: {x: [1, true, null]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"spec":{"big":9007199254740993,"ratio":0.5,"someFutureField":{"x":[1,true,null]}}}`
	if string(out) != want {
		t.Errorf("decoded and re-encoded:\n got %s\nwant %s", out, want)
	}
}

func TestEncodeWritesPlainYAMLWithoutNoise(t *testing.T) {
	obj, err := Decode([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},` +
		`"spec":{"replicas":3,"big":9007199254740993,"template":{"metadata":{"labels":{"on":"yes"}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Encode(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  big: 9007199254740993
  replicas: 3
  template:
    metadata:
      labels:
        "on": "yes"
    spec:
      containers:
      - image: nginx
        name: app
`
	if string(out) != want {
		t.Errorf("Encode:\n%s\nwant:\n%s", out, want)
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(obj)
	b, _ := json.Marshal(back)
	if string(a) != string(b) {
		t.Errorf("the YAML does not decode to the same object:\n got %s\nwant %s", b, a)
	}
}

func TestWriteAllSeparatesDocuments(t *testing.T) {
	var sb strings.Builder
	if err := WriteAll(&sb, map[string]any{"kind": "Pod"}, map[string]any{"kind": "Job"}); err != nil {
		t.Fatal(err)
	}
	if got, want := sb.String(), "kind: Pod\n---\nkind: Job\n"; got != want {
		t.Errorf("WriteAll = %q, want %q", got, want)
	}
}

func TestSplitCountsTheLinesOfDecodingErrorsFromTheStartOfTheStream(t *testing.T) {
	docs, err := Split(strings.NewReader("kind: Pod\n---\nkind: Job\nmetadata: {name: [x\n---\nkind: A\nkind: B\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("got %d documents, want 3", len(docs))
	}
	if got := docs[1].Err; got == nil || !strings.Contains(got.Error(), "yaml: line 4:") {
		t.Errorf("document 2 error = %v, want it to point at line 4 of the stream", got)
	}
	if got := docs[2].Err; got == nil || !strings.Contains(got.Error(), "line 7: key \"kind\" already set") {
		t.Errorf("document 3 error = %v, want it to point at line 7 of the stream", got)
	}
}
