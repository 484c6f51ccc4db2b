package inject

import (
	"math/rand"
	"testing"
)

// The hand-written scanner substitutes per pod; placeholderRE defines the grammar. They must find the same
// placeholders in the same places.
func TestPlaceholderScannerAgreesWithTheGrammar(t *testing.T) {
	cases := []string{
		"", "{{", "}}", "{{ pod.name }}", "{{pod.name}}", "a{{ pod.name }}b{{ params.x }}c", "{{{ pod.name }}",
		"{{ pod.name }}}", "{{ .Data.password }}", "{{ pod }}", "{{ pod. }}", "{{ params. }}", "{{ podname }}",
		"{{ pod.labels.app.kubernetes.io/name }}", "{{\tpod.name\n}}", "{{ pod.na me }}", "{{ pod.{x} }}",
		"{{ pod.name }", "{{ pod.name } }", "x{{ params.a }}{{ params.b }}", "{{ {{ pod.name }} }}",
	}
	r := rand.New(rand.NewSource(1))
	alphabet := []string{"{", "}", "{{", "}}", " ", "pod.", "params.", "name", ".", "\t", "x", "/"}
	for range 5000 {
		s := ""
		for n := r.Intn(12); n > 0; n-- {
			s += alphabet[r.Intn(len(alphabet))]
		}
		cases = append(cases, s)
	}
	for _, s := range cases {
		var got [][2]int
		for from := 0; ; {
			start, end, _, ok := nextPlaceholder(s, from)
			if !ok {
				break
			}
			got = append(got, [2]int{start, end})
			from = end
		}
		var want [][2]int
		for _, m := range placeholderRE.FindAllStringIndex(s, -1) {
			want = append(want, [2]int{m[0], m[1]})
		}
		if len(got) != len(want) {
			t.Fatalf("%q: scanner finds %v, the grammar %v", s, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: scanner finds %v, the grammar %v", s, got, want)
			}
		}
	}
}
