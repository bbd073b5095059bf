package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

const good = `# Source: x
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
data:
  k: v
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
spec:
  selector:
    matchLabels: {app: b}
  template:
    metadata:
      labels: {app: b}
    spec:
      containers:
        - name: c
          image: i
          resources:
            limits: {cpu: 500m, memory: 256Mi}
`

func runOn(t *testing.T, stream string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run([]io.Reader{strings.NewReader(stream)}, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAcceptsValidObjects(t *testing.T) {
	code, out, errOut := runOn(t, good)
	if code != 0 || out != "ConfigMap/a\nDeployment/b\n" {
		t.Fatalf("code %d, out %q, err %q", code, out, errOut)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]string{
		"unknown field":   strings.Replace(good, "image: i", "image: i\n          imagee: j", 1),
		"field case":      strings.Replace(good, "image: i", "Image: i", 1),
		"bad quantity":    strings.Replace(good, "cpu: 500m", "cpu: lots", 1),
		"wrong type":      strings.Replace(good, "name: c", "name: [c]", 1),
		"unknown kind":    strings.Replace(good, "kind: ConfigMap", "kind: ConfigMop", 1),
		"duplicate field": strings.Replace(good, "k: v", "k: v\n  k: w", 1),
	}
	for name, stream := range cases {
		if code, _, errOut := runOn(t, stream); code != 1 || !strings.Contains(errOut, "1 of 2") {
			t.Errorf("%s: code %d, stderr %q", name, code, errOut)
		}
	}
}

func TestEmptyInputFails(t *testing.T) {
	if code, _, _ := runOn(t, "# nothing\n"); code != 1 {
		t.Fatalf("code %d", code)
	}
}
