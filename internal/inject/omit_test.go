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
		// The lean decisions are the full ones in the same order, less some NotApplicable ones: all of them but
		// JobPolicySkip, and those about a template the pod wants that is not used (Shadowed, OverrideDenied,
		// ServedByPolicy), which metrics count.
		j := 0
		for _, d := range full.Decisions {
			if j < len(lean.Decisions) && sameDecision(d, lean.Decisions[j]) {
				j++
				continue
			}
			if d.Outcome != OutcomeNotApplicable || d.Reason == ReasonJobPolicySkip {
				t.Errorf("%s: decision %+v is missing when NotApplicable ones are omitted", c.name, d)
			}
			omitted++
		}
		if j != len(lean.Decisions) {
			t.Errorf("%s: the lean decisions are not the full ones less some NotApplicable: %+v, full %+v", c.name, lean.Decisions, full.Decisions)
		}
	}
	if omitted == 0 {
		t.Fatal("no case had a NotApplicable decision: the test checks nothing")
	}
}

func sameDecision(a, b Decision) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Outcome == b.Outcome && a.Reason == b.Reason
}
