// Package patchtest is what tests that check JSON patches share: applying an RFC 6902 patch with strict options,
// and decoding JSON with its numbers kept exact so that documents compare before and after. Only tests import it.
package patchtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// Options are the strict apply options: no negative array indices (the engine has no reason to use them; the API
// server may not allow them), and no parents created on add (absent parents must be created by the patch itself).
func Options() *jsonpatch.ApplyOptions {
	o := jsonpatch.NewApplyOptions()
	o.SupportNegativeIndices = false
	o.EnsurePathExistsOnAdd = false
	return o
}

// Apply applies patch (RFC 6902, as JSON) to doc with Options. An empty patch returns doc unchanged.
func Apply(doc, patch []byte) ([]byte, error) {
	if len(patch) == 0 {
		return doc, nil
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("patch does not decode: %w", err)
	}
	return p.ApplyWithOptions(doc, Options())
}

// Decode decodes one JSON value, numbers as json.Number (exact), and rejects trailing data.
func Decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}
