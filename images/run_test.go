package images

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStepErrorsNameTheStep(t *testing.T) {
	ctx := context.Background()
	_, err := step{name: "slow thing", timeout: 50 * time.Millisecond}.run(ctx, "sleep", "30")
	require.ErrorIs(t, err, ErrStepTimeout)
	assert.Contains(t, err.Error(), "slow thing")

	_, err = step{name: "failing thing", timeout: time.Minute}.run(ctx, "sh", "-c", "echo why >&2; exit 3")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "failing thing")
	assert.Contains(t, err.Error(), "why", "stderr is in the error")

	_, err = step{name: "missing tool", timeout: time.Minute}.run(ctx, "/nonexistent/tool")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing tool")

	out, err := step{name: "echo", timeout: time.Minute, env: []string{"X_TEST=42"}}.run(ctx, "sh", "-c", "printf %s $X_TEST")
	require.NoError(t, err)
	assert.Equal(t, "42", string(out))
}
