package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteText writes the report for people: per pod, the result, every template with its outcome, reason and why,
// what it adds, the warnings, the denial and the patch (one operation per line, exactly as the webhook sends it).
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for i := range r.Pods {
		if i > 0 {
			b.WriteString("\n")
		}
		writePod(&b, &r.Pods[i])
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writePod(b *bytes.Buffer, p *Pod) {
	fmt.Fprintf(b, "%s in namespace %s (%s)\n", p.Object, p.Namespace, p.Source)
	result := p.Result
	switch {
	case p.Error != "":
		result += ": " + p.Error
	case p.SkipReason != "":
		result += fmt.Sprintf(" (no template applies to this pod: %s)", p.SkipReason)
	}
	fmt.Fprintf(b, "  Result: %s\n", result)
	if p.Error != "" {
		return
	}

	b.WriteString("  Templates:\n")
	if len(p.Templates) == 0 {
		b.WriteString("    none\n")
	}
	keys := make([]string, len(p.Templates))
	keyWidth, outcomeWidth := 0, 0
	for i, t := range p.Templates {
		keys[i] = t.Name
		if t.Namespace != "" {
			keys[i] = types.NamespacedName{Namespace: t.Namespace, Name: t.Name}.String()
		}
		if t.ClusterWide {
			keys[i] += " (cluster-wide)"
		}
		keyWidth, outcomeWidth = max(keyWidth, len(keys[i])), max(outcomeWidth, len(t.Outcome))
	}
	for i, t := range p.Templates {
		fmt.Fprintf(b, "    %-*s  %-*s  %s\n", keyWidth, keys[i], outcomeWidth, t.Outcome, t.Reason)
		if t.Revision > 0 {
			fmt.Fprintf(b, "      revision %d\n", t.Revision)
		}
		if t.Message != "" {
			fmt.Fprintf(b, "      %s\n", t.Message)
		}
		if a := t.Added; a != nil {
			verb := "adds"
			switch {
			case t.Outcome == inject.OutcomeAlreadyInjected:
				verb = "has"
			case p.Denied:
				verb = "would add (but the pod is denied)"
			}
			for _, l := range []struct {
				what  string
				names []string
			}{{"containers", a.Containers}, {"init containers", a.InitContainers}, {"volumes", a.Volumes}} {
				if len(l.names) > 0 {
					fmt.Fprintf(b, "      %s %s: %s\n", verb, l.what, strings.Join(l.names, ", "))
				}
			}
		}
	}

	if len(p.Warnings) > 0 {
		b.WriteString("  Warnings:\n")
		for _, w := range p.Warnings {
			fmt.Fprintf(b, "    %s\n", w)
		}
	}
	if p.Denied {
		fmt.Fprintf(b, "  Denied: %s\n", p.DenyMessage)
	}
	var ops []json.RawMessage
	_ = json.Unmarshal(p.Patch, &ops) // built by Explain from the engine's own encoding
	if len(ops) == 0 {
		b.WriteString("  Patch: none\n")
		return
	}
	b.WriteString("  Patch:\n    [\n")
	for i, op := range ops {
		sep := ","
		if i == len(ops)-1 {
			sep = ""
		}
		fmt.Fprintf(b, "      %s%s\n", op, sep)
	}
	b.WriteString("    ]\n")
}
