package inject

import "testing"

// A typed parameter's declaration and its placeholders are checked once, at Compile: each mistake makes the
// template Invalid with a message naming the field and saying what to change. Templates read from files are not
// checked by the CRD's schema, so the engine checks what it accepts itself.
func TestTypedParameterMistakesMakeTheTemplateInvalid(t *testing.T) {
	requested := simplePod("{app: web}", `{sidecar.dev/inject: t}`)
	invalid := func(msg string) []string { return []string{`sidecar template "t" is invalid: ` + msg} }
	proxy := func(params, resources string) string {
		return "  parameters: " + params + "\n  containers: [{name: p, image: 'p:1'" + resources + "}]"
	}
	runTable(t, []tableCase{
		{
			name:      "a minimum above the maximum",
			pod:       requested,
			templates: one(proxy(`[{name: cpu, type: Quantity, default: "1", minimum: "2", maximum: 1}]`, "")),
			denied:    true,
			denyHas:   invalid(`spec.parameters[0] ("cpu"): minimum 2 is above maximum 1`),
		},
		{
			name:      "a bound that is not of the parameter's type",
			pod:       requested,
			templates: one(proxy(`[{name: port, type: Integer, default: "80", maximum: 8Ki}]`, "")),
			denied:    true,
			denyHas:   invalid(`spec.parameters[0] ("port").maximum "8Ki" is not an integer`),
		},
		{
			name:      "bounds on a String parameter (the CRD refuses them; a file is not checked by the CRD)",
			pod:       requested,
			templates: one(proxy(`[{name: level, default: info, minimum: 1}]`, "")),
			denied:    true,
			denyHas:   invalid(`spec.parameters[0] ("level"): minimum and maximum need type Quantity or Integer`),
		},
		{
			name:      "a default of the wrong type",
			pod:       requested,
			templates: one(proxy(`[{name: cpu, type: Quantity, default: lots}]`, "")),
			denied:    true,
			denyHas:   invalid(`spec.parameters[0] ("cpu"): the default "lots" is not a quantity`),
		},
		{
			name:      "a String parameter standing for a resource value",
			pod:       requested,
			templates: one(proxy(`[{name: cpu, default: "1"}]`, `, resources: {limits: {cpu: "{{ params.cpu }}"}}`)),
			denied:    true,
			denyHas:   invalid(`spec.containers[0].resources.limits.cpu uses parameter "cpu" of type String; this field needs a parameter of type Quantity (declare it with type: Quantity)`),
		},
		{
			name:      "a Quantity parameter standing for a port",
			pod:       requested,
			templates: one(proxy(`[{name: cpu, type: Quantity, default: "1"}]`, `, ports: [{containerPort: "{{ params.cpu }}"}]`)),
			denied:    true,
			denyHas:   invalid(`spec.containers[0].ports[0].containerPort uses parameter "cpu" of type Quantity; this field needs a parameter of type Integer`),
		},
		{
			name:      "a pod value standing for a resource value",
			pod:       requested,
			templates: one(proxy(`[]`, `, resources: {requests: {memory: "{{ pod.name }}"}}`)),
			denied:    true,
			denyHas:   invalid(`spec.containers[0].resources.requests.memory is "{{ pod.name }}": this field holds a quantity or exactly one {{ params.NAME }} of a parameter of type Quantity`),
		},
		{
			name:      "an undeclared parameter standing for a port",
			pod:       requested,
			templates: one(proxy(`[]`, `, ports: [{containerPort: "{{ params.port }}"}]`)),
			denied:    true,
			denyHas:   invalid(`spec.containers[0].ports[0].containerPort uses parameter "port", which spec.parameters does not declare`),
		},
	})
}
