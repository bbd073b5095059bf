// Command k8scheck decodes every object of a rendered manifest stream (helm template
// output) strictly into the Kubernetes API types of k8s.io/api: an unknown or duplicated
// field, a wrong type, an unparsable quantity or an unregistered kind is an error. No
// cluster is needed, so a chart can be checked where none runs.
//
//	helm template ... | k8scheck            # or: k8scheck FILE...
//
// Prints one "kind/name" line per object; exits 1 naming every object that failed.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// header is what every object carries: enough to pick its Go type.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// check decodes one YAML document strictly; it returns "kind/name", or an error.
func check(scheme *runtime.Scheme, doc []byte) (string, error) {
	var h header
	if err := yaml.Unmarshal(doc, &h); err != nil {
		return "", fmt.Errorf("not a Kubernetes object: %w", err)
	}
	id := h.Kind + "/" + h.Metadata.Name
	if h.APIVersion == "" || h.Kind == "" {
		return id, errors.New("apiVersion and kind are required")
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil {
		return id, err
	}
	obj, err := scheme.New(gv.WithKind(h.Kind))
	if err != nil {
		return id, fmt.Errorf("%s %s is not a kind of k8s.io/api: %w", h.APIVersion, h.Kind, err)
	}
	// As the API server decodes: field names matched case-sensitively (encoding/json
	// would take "readOnlyRootFileSystem" for readOnlyRootFilesystem), unknown and
	// duplicate fields rejected.
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return id, err
	}
	strict, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return id, err
	}
	return id, errors.Join(strict...)
}

// documents splits a YAML stream into non-empty documents.
func documents(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops comment-only lines (helm prints "# Source: ..." before each object).
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func run(inputs []io.Reader, stdout, stderr io.Writer) int {
	scheme := newScheme()
	failed, total := 0, 0
	for _, in := range inputs {
		docs, err := documents(in)
		if err != nil {
			fmt.Fprintf(stderr, "k8scheck: reading the stream: %v\n", err)
			return 2
		}
		for _, doc := range docs {
			total++
			id, err := check(scheme, doc)
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "k8scheck: %s: %v\n", id, err)
				continue
			}
			fmt.Fprintln(stdout, id)
		}
	}
	if total == 0 {
		fmt.Fprintln(stderr, "k8scheck: no objects in the input")
		return 1
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "k8scheck: %d of %d objects failed\n", failed, total)
		return 1
	}
	return 0
}

func main() {
	var inputs []io.Reader
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		inputs = append(inputs, f)
	}
	if len(inputs) == 0 {
		inputs = append(inputs, os.Stdin)
	}
	os.Exit(run(inputs, os.Stdout, os.Stderr))
}
