package docs

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	yamlv3 "go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// yamlBlocks returns ci.md's YAML code blocks in order.
func yamlBlocks(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("ci.md")
	require.NoError(t, err)
	var out []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	require.Len(t, out, 2, "the workflow and the Kubernetes manifests")
	return out
}

// shardArg finds "--shard K/N" in a command and returns K's text and N.
var shardArg = regexp.MustCompile(`--shard "?(.+?)/([0-9]+)"?(\s|$)`)

// TestKubernetesJob parses the manifests with the Kubernetes API types
// (strictly: a misspelt field fails) and checks the Indexed Job maps its
// completion index to --shard and the merge reads every shard.
func TestKubernetesJob(t *testing.T) {
	docs := strings.Split(yamlBlocks(t)[1], "\n---\n")
	require.Len(t, docs, 2)
	var job, merge batchv1.Job
	require.NoError(t, yaml.UnmarshalStrict([]byte(docs[0]), &job))
	require.NoError(t, yaml.UnmarshalStrict([]byte(docs[1]), &merge))

	require.Equal(t, "batch/v1", job.APIVersion)
	require.Equal(t, "Job", job.Kind)
	spec := job.Spec
	require.NotNil(t, spec.CompletionMode)
	require.Equal(t, batchv1.IndexedCompletion, *spec.CompletionMode)
	require.NotNil(t, spec.Completions)
	n := int(*spec.Completions)
	require.Greater(t, n, 1)
	require.Equal(t, *spec.Completions, *spec.Parallelism)
	require.Equal(t, corev1.RestartPolicyNever, spec.Template.Spec.RestartPolicy)

	require.Len(t, spec.Template.Spec.Containers, 1)
	c := spec.Template.Spec.Containers[0]
	cmd := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
	m := shardArg.FindStringSubmatch(cmd)
	require.NotNil(t, m, "no --shard in %q", cmd)
	require.Equal(t, "$((JOB_COMPLETION_INDEX + 1))", m[1], "shards are 1-based, the completion index 0-based")
	require.Equal(t, n, atoi(t, m[2]), "--shard's N is the completion count")
	require.Contains(t, cmd, "vmm test ")
	require.Contains(t, cmd, `--out "/results/shard-$((JOB_COMPLETION_INDEX + 1))"`)
	kvm, ok := c.Resources.Limits[corev1.ResourceName("devices.kubevirt.io/kvm")]
	require.True(t, ok, "/dev/kvm through the device plugin's resource")
	require.Equal(t, int64(1), kvm.Value())
	require.Nil(t, c.SecurityContext, "no privileges beyond the device")
	mounts := map[string]string{}
	for _, v := range c.VolumeMounts {
		mounts[v.Name] = v.MountPath
	}
	require.Equal(t, "/results", mounts["results"])
	claims := map[string]string{}
	for _, v := range spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			claims[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}

	require.Nil(t, merge.Spec.CompletionMode)
	mc := merge.Spec.Template.Spec.Containers[0]
	mcmd := strings.Join(append(append([]string{}, mc.Command...), mc.Args...), " ")
	require.Contains(t, mcmd, "vmm test merge ")
	require.Contains(t, mcmd, " /results/shard-*")
	require.Contains(t, mcmd, "--junit ")
	for _, v := range merge.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			require.Equal(t, claims[v.Name], v.PersistentVolumeClaim.ClaimName, "the merge reads the shards' volume")
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, r := range s {
		require.True(t, r >= '0' && r <= '9', s)
		n = n*10 + int(r-'0')
	}
	return n
}

// workflow is the part of a GitHub Actions workflow the test reads.
type workflow struct {
	Jobs map[string]struct {
		RunsOn   string `yaml:"runs-on"`
		Needs    string `yaml:"needs"`
		If       string `yaml:"if"`
		Strategy struct {
			FailFast *bool `yaml:"fail-fast"`
			Matrix   struct {
				Shard []int `yaml:"shard"`
			} `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			If   string            `yaml:"if"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// TestGitHubWorkflow: the matrix runs shards 1..N of N, uploads each --out
// directory, and the merge job (run even after failures) merges them all.
func TestGitHubWorkflow(t *testing.T) {
	var w workflow
	dec := yamlv3.NewDecoder(strings.NewReader(yamlBlocks(t)[0]))
	dec.KnownFields(false)
	require.NoError(t, dec.Decode(&w))
	suite, ok := w.Jobs["suite"]
	require.True(t, ok)
	shards := suite.Strategy.Matrix.Shard
	require.NotEmpty(t, shards)
	for i, s := range shards {
		require.Equal(t, i+1, s, "shards 1..N")
	}
	require.NotNil(t, suite.Strategy.FailFast)
	require.False(t, *suite.Strategy.FailFast, "one failing shard must not cancel the others")
	var run, upload bool
	for _, s := range suite.Steps {
		if m := shardArg.FindStringSubmatch(s.Run); m != nil {
			run = true
			require.Equal(t, "${{ matrix.shard }}", m[1])
			require.Equal(t, len(shards), atoi(t, m[2]))
			require.Contains(t, s.Run, "--out out")
		}
		if strings.HasPrefix(s.Uses, "actions/upload-artifact@") {
			upload = true
			require.Equal(t, "always()", s.If)
			require.Equal(t, "shard-${{ matrix.shard }}", s.With["name"])
			require.Equal(t, "out/", s.With["path"])
		}
	}
	require.True(t, run && upload)

	merge, ok := w.Jobs["merge"]
	require.True(t, ok)
	require.Equal(t, "suite", merge.Needs)
	require.Equal(t, "always()", merge.If)
	var download, merged bool
	for _, s := range merge.Steps {
		if strings.HasPrefix(s.Uses, "actions/download-artifact@") {
			download = true
			require.Equal(t, "shard-*", s.With["pattern"])
			require.Equal(t, "shards", s.With["path"])
		}
		if strings.Contains(s.Run, "vmm test merge") {
			merged = true
			require.Contains(t, s.Run, "shards/shard-*")
			require.Contains(t, s.Run, "--junit junit.xml")
			require.Contains(t, s.Run, "--html report.html")
		}
	}
	require.True(t, download && merged)
}
