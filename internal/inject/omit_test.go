package inject

import (
	"bytes"
	"testing"
)

// The webhook asks for the decisions that matter only; everything else about the result must be the same.
func TestOmittingNotApplicableDecisionsChangesNothingElse(t *testing.T) {
	cases := allPropertyCases(t) // the golden cases and the random pods
	omitted := 0
	for _, c := range cases {
		full, err := Inject(c.req)
		if err != nil {
			continue
		}
		req := c.req
		req.OmitNotApplicable = true
		lean, err := Inject(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		a, _ := full.PatchJSON()
		b, _ := lean.PatchJSON()
		if !bytes.Equal(a, b) || full.Denied != lean.Denied || full.DenyMessage != lean.DenyMessage ||
			full.PodSkipReason != lean.PodSkipReason || len(full.Warnings) != len(lean.Warnings) {
			t.Errorf("%s: omitting NotApplicable decisions changed the result", c.name)
		}
		var want []Decision
		for _, d := range full.Decisions {
			if d.Outcome != OutcomeNotApplicable || d.Reason == ReasonJobPolicySkip {
				want = append(want, d)
			} else {
				omitted++
			}
		}
		if len(want) != len(lean.Decisions) {
			t.Fatalf("%s: %d decisions, want the %d that are not NotApplicable", c.name, len(lean.Decisions), len(want))
		}
		for i := range want {
			if want[i].Namespace != lean.Decisions[i].Namespace || want[i].Name != lean.Decisions[i].Name ||
				want[i].Outcome != lean.Decisions[i].Outcome || want[i].Reason != lean.Decisions[i].Reason {
				t.Errorf("%s: decision %d = %+v, want %+v", c.name, i, lean.Decisions[i], want[i])
			}
		}
	}
	if omitted == 0 {
		t.Fatal("no case had a NotApplicable decision: the test checks nothing")
	}
}
