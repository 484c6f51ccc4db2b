package webhook

import (
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
)

// reviewBodies are the reviews the API server sends (the benchmark's, every member set) and the shapes that
// decodeReview leaves to json v2: nulls, wrong kinds, escaped and repeated names, broken JSON, trailing data.
func reviewBodies(t testing.TB) [][]byte {
	bodies := admissionReviewSeeds()
	for _, size := range []string{"small", "realistic", "large"} {
		bodies = append(bodies, benchmarkReview(t, size))
	}
	const head = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`
	for _, req := range []string{
		`null`, `{}`, `[]`, `"x"`, `{"uid":null}`, `{"uid":7}`, `{"uid":"a\"b"}`, `{"uid":"\u00e9"}`, "{\"uid\":\"\xff\"}",
		`{"uid":"a","uid":"b"}`, `{"uid":"a","u\u0069d":"b"}`, `{"UID":"a"}`, `{"uid ":"a"}`,
		`{"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"apps","version":"v1","resource":"deployments"}}`,
		`{"kind":null}`, `{"kind":{"kind":1}}`, `{"kind":{"kind":"Pod","kind":"X"}}`, `{"kind":{"x":[1,{"y":2}],"kind":"Pod"}}`, `{"resource":"pods"}`,
		`{"kind":{"version":"v1"},"kind":{"kind":"Pod"}}`,
		`{"dryRun":true}`, `{"dryRun":false}`, `{"dryRun":null}`, `{"dryRun":"true"}`, `{"dryRun":1}`,
		`{"object":null}`, `{"object":{"a":1,"a":2}}`, `{"object":[1,2]}`, `{"object":"x"}`, `{"object":{}}`, "{\"object\":{\"a\":\"\xff\"}}",
		`{"oldObject":{"x":{"y":[1,2,3]}},"userInfo":{"username":"u","groups":["a","b"],"extra":{"k":["v"]}},"options":null}`,
		`{"userInfo":{"username":"u","username":"v"}}`, `{"userInfo":[1,}`, `{"namespace":"team-a","name":"","subResource":"status","operation":"DELETE"}`,
		`{"operation":"CONNECT","namespace":"` + strings.Repeat("n", 300) + `"}`, `{"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestSubResource":""}`,
	} {
		bodies = append(bodies, []byte(head+req+`}`))
	}
	for _, body := range []string{
		`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, `{"kind":null,"apiVersion":"x"}`,
		`{"kind":"AdmissionReview"} `, `{"kind":"AdmissionReview"} {}`, `{"kind":"AdmissionReview"}x`, ` {"kind":"AdmissionReview"}`,
		`{"kind":"AdmissionReview","response":{"uid":"x","allowed":true}}`, `{"ki\u006ed":"AdmissionReview"}`, `{"kind":"Admission\u0052eview"}`,
		`{"kind":"AdmissionReview",}`, `{"kind":"AdmissionReview"`, `{"kind"}`, `{`, `"AdmissionReview"`, `1`, `true`, ``,
	} {
		bodies = append(bodies, []byte(body))
	}
	return bodies
}

// decodeReview reads the reviews it reads itself as json v2 does (values, request.object a slice of the body)
// and leaves every other shape to json v2 (the same values, the same error).
func TestReviewsDecodeAsJSONv2Does(t *testing.T) {
	for _, body := range reviewBodies(t) {
		t.Run(string(body[:min(len(body), 120)]), func(t *testing.T) { compareReviewDecoding(t, body) })
	}
}

func FuzzDecodeReview(f *testing.F) {
	for _, body := range reviewBodies(f) {
		f.Add(body)
	}
	f.Fuzz(compareReviewDecoding)
}

func compareReviewDecoding(t *testing.T, body []byte) {
	var want, got admissionReview
	wantErr := jsonv2.Unmarshal(body, &want, decodeOptions)
	gotErr := decodeReview(body, &got)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("err = %v, json v2's = %v", gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\njson v2 decodes\n%+v", got, want)
	}
	if got.Request != nil && len(got.Request.Object.Raw) > 0 && !sliceOf(body, got.Request.Object.Raw) {
		t.Errorf("request.object is not a slice of the body capped at its length (a copy per request, or room to append into the body)")
	}
}

func sliceOf(body, raw []byte) bool {
	for i := 0; i+len(raw) <= len(body); i++ {
		if &body[i] == &raw[0] {
			return cap(raw) == len(raw)
		}
	}
	return false
}

// The reviews the API server sends are read by decodeReview itself, not by json v2 after it gave up, in at most
// four allocations (the request, its uid and namespace, dryRun); the fixed words are not allocated.
func TestTheAPIServersReviewsAreReadAsTokens(t *testing.T) {
	for _, size := range []string{"small", "realistic", "large"} {
		body := benchmarkReview(t, size)
		var rev admissionReview
		if !new(reviewReader).read(body, &rev) || rev.Request == nil || rev.Request.Namespace == "" {
			t.Fatalf("%s: the review was left to json v2", size)
		}
		if raceEnabled {
			continue
		}
		if allocs := testing.AllocsPerRun(100, func() { rev = admissionReview{}; _ = decodeReview(body, &rev) }); allocs > 4 {
			t.Errorf("%s: decoding the review allocated %.0f times, want at most 4", size, allocs)
		}
	}
}

// BenchmarkDecodeReview: the API server's review of each benchmark pod, read by decodeReview and by json v2 as
// decodeReview falls back to it.
func BenchmarkDecodeReview(b *testing.B) {
	for _, size := range []string{"small", "realistic", "large"} {
		body := benchmarkReview(b, size)
		for _, d := range []struct {
			name   string
			decode func([]byte, *admissionReview) error
		}{
			{"tokens", decodeReview},
			{"jsonv2", func(body []byte, rev *admissionReview) error { return jsonv2.Unmarshal(body, rev, decodeOptions) }},
		} {
			b.Run(size+"/"+d.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					var rev admissionReview
					if err := d.decode(body, &rev); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchmarkReview is the AdmissionReview the API server sends for the benchmark pod of size.
func benchmarkReview(tb testing.TB, size string) []byte {
	tb.Helper()
	pod, err := fixtures.Pod(size)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := fixtures.Review(pod)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}
