package workload

import (
	"strings"
	"testing"
)

// Offline inject keeps every number exactly as it was written, in YAML and in JSON, through reading, patching
// and writing: a number this build does not know the meaning of is the user's, not ours to round.
func TestNumbersAreKeptExactly(t *testing.T) {
	numbers := []string{"12345678901234567890123", "1e400", "-0", "1.50", "0.1e1", "9007199254740993"}
	var yamlFields, jsonFields []string
	for i, n := range numbers {
		yamlFields = append(yamlFields, "  n"+itoa(int64(i))+": "+n)
		jsonFields = append(jsonFields, `"n`+itoa(int64(i))+`":`+n)
	}
	for name, doc := range map[string]string{
		"YAML": "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: a}]\n" +
			strings.Join(yamlFields, "\n") + "\n  list: [" + strings.Join(numbers, ", ") + "]\n",
		"JSON": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"a"}],` +
			strings.Join(jsonFields, ",") + `,"list":[` + strings.Join(numbers, ",") + `]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			obj, err := Decode([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			pods, err := Pods(obj, "default")
			if err != nil || len(pods) != 1 {
				t.Fatalf("pods: %v %d", err, len(pods))
			}
			if err := pods[0].Apply([]byte(`[{"op":"add","path":"/spec/containers/-","value":{"name":"s","image":"s"}}]`)); err != nil {
				t.Fatal(err)
			}
			out, err := Encode(obj)
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range numbers {
				if !strings.Contains(string(out), "  n"+itoa(int64(i))+": "+n+"\n") || !strings.Contains(string(out), "\n  - "+n+"\n") {
					t.Errorf("%s is not written as it was read:\n%s", n, out)
				}
			}
		})
	}
}
