package controller

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func podWithRecord(record string) metav1.PartialObjectMetadata {
	p := metav1.PartialObjectMetadata{}
	if record != "" {
		p.Annotations = map[string]string{v1alpha1.AnnotationStatus: record}
	}
	return p
}

func TestTemplateKeysOf(t *testing.T) {
	for _, tc := range []struct {
		record string
		want   []string
	}{
		{`{"templates":[{"namespace":"team-a","name":"log","generation":1,"hash":"h1","containers":["log"]},` +
			`{"namespace":"platform","name":"proxy","generation":4,"hash":"h2"}]}`, []string{"team-a/log", "platform/proxy"}},
		{`{"templates":[{"namespace":"team-a","name":"log"},{"namespace":"team-a","name":"log"}]}`, []string{"team-a/log"}},
		{`{"templates":[{"name":"no-namespace"},{"namespace":"team-a"}]}`, nil},
		{`{"templates":[]}`, nil},
		{`not json`, nil},
		{``, nil},
	} {
		got := TemplateKeysOf(podWithRecord(tc.record).Annotations)
		if !slices.Equal(got, tc.want) {
			t.Errorf("TemplateKeysOf(%s) = %q, want %q", tc.record, got, tc.want)
		}
	}
	if got := TemplateKeysOf(nil); got != nil {
		t.Errorf("no annotations: %q", got)
	}
}

func TestCountDrift(t *testing.T) {
	rec := func(entries ...string) string {
		s := `{"templates":[`
		for i, e := range entries {
			if i > 0 {
				s += ","
			}
			s += e
		}
		return s + `]}`
	}
	current := `{"namespace":"team-a","name":"log","generation":3,"hash":"new"}`
	old := `{"namespace":"team-a","name":"log","generation":2,"hash":"old"}`
	other := `{"namespace":"platform","name":"log","generation":1,"hash":"new"}`
	deleting := podWithRecord(rec(old))
	deleting.DeletionTimestamp = &metav1.Time{}

	pods := []metav1.PartialObjectMetadata{
		podWithRecord(rec(current)),
		podWithRecord(rec(other, current)),
		podWithRecord(rec(old)),
		podWithRecord(rec(other, old)),
		podWithRecord(rec(other)), // another template of the same name, cluster-wide
		podWithRecord(""),         // no record
		podWithRecord("garbage"),  // unreadable record
		deleting,                  // on its way out
	}
	got := CountDrift(pods, "team-a", "log", "new")
	if want := (Drift{Injected: 4, Outdated: 2, ByHash: map[string]int32{"new": 2, "old": 2}}); !reflect.DeepEqual(got, want) {
		t.Errorf("CountDrift(team-a/log) = %+v, want %+v", got, want)
	}
	got = CountDrift(pods, "platform", "log", "new")
	if want := (Drift{Injected: 3, Outdated: 0, ByHash: map[string]int32{"new": 3}}); !reflect.DeepEqual(got, want) {
		t.Errorf("CountDrift(platform/log) = %+v, want %+v", got, want)
	}
	if got := CountDrift(nil, "team-a", "log", "new"); !reflect.DeepEqual(got, Drift{}) {
		t.Errorf("no pods: %+v", got)
	}
}

// TestTheRecordTheEngineWritesIsReadForItsTemplatesAndHashes: the controllers decode only part of the record
// (recordedTemplates); the names and hashes they read are those of the engine's own record type.
func TestTheRecordTheEngineWritesIsReadForItsTemplatesAndHashes(t *testing.T) {
	written := inject.Status{Templates: []inject.StatusEntry{
		{Namespace: "team-a", Name: "log", Generation: 3, Hash: "h1", Revision: 2, Values: map[string]string{"pod.labels.app": "web"}},
		{Namespace: "platform", Name: "proxy", Generation: 1, Hash: "h2"},
	}}
	written.Templates[0].Containers = []string{"log"}
	raw, err := json.Marshal(written)
	if err != nil {
		t.Fatal(err)
	}
	got := readRecord(map[string]string{v1alpha1.AnnotationStatus: string(raw)})
	if got == nil || len(got.Templates) != len(written.Templates) {
		t.Fatalf("read %+v from %s, want its %d templates", got, raw, len(written.Templates))
	}
	for i, e := range written.Templates {
		if g := got.Templates[i]; g.Namespace != e.Namespace || g.Name != e.Name || g.Hash != e.Hash {
			t.Errorf("template %d read as %+v, want %s/%s hash %s", i, g, e.Namespace, e.Name, e.Hash)
		}
	}
}

// BenchmarkReadRecord: what reading a pod's record costs the controllers (their part of it), against decoding
// the whole record.
func BenchmarkReadRecord(b *testing.B) {
	raw := `{"templates":[{"namespace":"measure-on-abcde","name":"measure","generation":1,"hash":"b17bb90ccb5dc2c4",` +
		`"revision":1,"containers":["log-shipper"],"volumes":["logs"],"volumeMounts":["app/logs","worker/logs","cache/logs"],` +
		`"values":{"pod.name":"m1-123","pod.labels.app":"web"}}]}`
	annotations := map[string]string{v1alpha1.AnnotationStatus: raw}
	b.Run("the templates and hashes", func(b *testing.B) {
		for b.Loop() {
			if readRecord(annotations) == nil {
				b.Fatal("unread")
			}
		}
	})
	b.Run("the whole record", func(b *testing.B) {
		for b.Loop() {
			var st inject.Status
			if err := json.Unmarshal([]byte(raw), &st); err != nil {
				b.Fatal(err)
			}
		}
	})
}
