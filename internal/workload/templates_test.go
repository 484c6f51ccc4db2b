package workload

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// One reader for `inject --templates` and `explain --templates`: what it accepts and refuses is what the API
// server would, and every refusal names the file, the document and the field.
func TestReadTemplates(t *testing.T) {
	const head = "apiVersion: sidecar.dev/v1alpha1\nkind: SidecarTemplate\n"
	for _, tc := range []struct {
		name    string
		in      string
		want    []string // namespace/name@generation of what is read
		wantErr []string // one substring per error, in order
	}{
		{
			name: "a template without namespace or generation is in the default namespace at generation 1",
			in:   head + "metadata: {name: a}\nspec: {}\n---\n" + head + "metadata: {name: b, namespace: x, generation: 7}\nspec: {}\n",
			want: []string{"team-a/a@1", "x/b@7"},
		},
		{
			name: "a List and a SidecarTemplateList give their items",
			in: "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(head, "\n", "\n  ") + "metadata: {name: a}\n" +
				"---\napiVersion: sidecar.dev/v1alpha1\nkind: SidecarTemplateList\nitems: [{apiVersion: sidecar.dev/v1alpha1, kind: SidecarTemplate, metadata: {name: b}}]\n",
			want: []string{"team-a/a@1", "team-a/b@1"},
		},
		{
			name:    "a YAML boolean or number where the API expects a string is refused, as the API server refuses it",
			in:      head + "metadata: {name: a}\nspec: {env: [{name: A, value: yes}]}\n---\n" + head + "metadata: {name: b}\nspec: {env: [{name: B, value: 8080}]}\n",
			wantErr: []string{`f.yaml: document 1 (SidecarTemplate "a"): `, `f.yaml: document 2 (SidecarTemplate "b"): `},
		},
		{
			name:    "unknown and duplicated fields are refused by path",
			in:      head + "metadata: {name: a}\nspec: {contaners: []}\n---\n" + head + "metadata: {name: b}\nspec: {order: 1, order: 2}\n",
			wantErr: []string{`document 1 (SidecarTemplate "a"): unknown field "spec.contaners"`, `document 2 (starting on line 5): cannot decode document`},
		},
		{
			name:    "another kind, a nameless template and a template defined twice are refused",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n" + head + "metadata: {namespace: x}\n---\n" + head + "metadata: {name: a}\n---\n" + head + "metadata: {name: a, namespace: team-a}\n",
			wantErr: []string{`document 1 (ConfigMap "c"): kind "ConfigMap"`, "metadata.name is required", `document 4 (SidecarTemplate "a"): SidecarTemplate "a" in namespace "team-a" is also defined at document 3`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadTemplates(strings.NewReader(tc.in), "f.yaml", "team-a")
			var errs []error
			if err != nil {
				errs = err.(interface{ Unwrap() []error }).Unwrap()
			}
			if len(errs) != len(tc.wantErr) {
				t.Fatalf("errors %v, want %d: %q", errs, len(tc.wantErr), tc.wantErr)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tc.wantErr[i]) {
					t.Errorf("error %d: %v, want one containing %q", i, e, tc.wantErr[i])
				}
			}
			if err != nil {
				return
			}
			var keys []string
			for _, rt := range got {
				keys = append(keys, rt.Object.Namespace+"/"+rt.Object.Name+"@"+itoa(rt.Object.Generation))
			}
			if strings.Join(keys, " ") != strings.Join(tc.want, " ") {
				t.Errorf("read %v, want %v", keys, tc.want)
			}
		})
	}
	if _, err := ReadTemplates(errReader{}, "f.yaml", "x"); err == nil || !strings.Contains(err.Error(), "reading f.yaml") {
		t.Errorf("a failing reader: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken") }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
