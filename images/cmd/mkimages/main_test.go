package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{outer: true, timeout: 30 * time.Minute}, o)

	o, err = parseFlags([]string{"-out", "x", "-outer=false", "-timeout", "5m"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{out: "x", timeout: 5 * time.Minute}, o)

	o, err = parseFlags([]string{"-debian"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, options{outer: true, debian: true, timeout: 30 * time.Minute}, o)

	_, err = parseFlags([]string{"extra"}, io.Discard)
	assert.Error(t, err)
	_, err = parseFlags([]string{"-nope"}, io.Discard)
	assert.Error(t, err)
}
