package hyperv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// TraceRecord is one line of --hyperv-trace output: a synthetic MSR access
// or a hypercall.
type TraceRecord struct {
	// T is the time since the partition was created.
	T time.Duration `json:"t_ns"`
	// Ref is the guest's reference time (100 ns units) at the access.
	Ref  uint64 `json:"ref"`
	VCPU int    `json:"vcpu"`
	// Kind is rdmsr, wrmsr or hypercall.
	Kind string `json:"kind"`
	// MSR and Name for MSR accesses; Value is what was read or written.
	MSR   string `json:"msr,omitempty"`
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	// GP is set when the guest got #GP.
	GP bool `json:"gp,omitempty"`
	// Code, Fast, Reps and Status for hypercalls.
	Code   string `json:"code,omitempty"`
	Fast   bool   `json:"fast,omitempty"`
	Reps   uint16 `json:"reps,omitempty"`
	Status string `json:"status,omitempty"`
	// Detail is a VMBus control message's fields (kind vmbus-in,
	// vmbus-out) or an integration service's versions (vmbus-ic).
	Detail string `json:"detail,omitempty"`
}

// tracer writes TraceRecords as JSON lines. A nil tracer traces nothing.
type tracer struct {
	clock Clock
	start time.Time
	mu    sync.Mutex
	w     *bufio.Writer
	enc   *json.Encoder
	err   error
}

func newTracer(w io.Writer, clock Clock) *tracer {
	bw := bufio.NewWriter(w)
	return &tracer{clock: clock, start: time.Now(), w: bw, enc: json.NewEncoder(bw)}
}

func (t *tracer) write(r TraceRecord) {
	if t == nil {
		return
	}
	r.T = time.Since(t.start)
	r.Ref = t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = t.enc.Encode(r)
	}
}

func (t *tracer) msr(vcpu int, kind string, msr uint32, value uint64, gp bool) {
	if t == nil {
		return
	}
	t.write(TraceRecord{VCPU: vcpu, Kind: kind, MSR: fmt.Sprintf("%#x", msr), Name: msrName(msr),
		Value: fmt.Sprintf("%#x", value), GP: gp})
}

func (t *tracer) hypercall(vcpu int, in hypercallInput, status uint16) {
	if t == nil {
		return
	}
	t.write(TraceRecord{VCPU: vcpu, Kind: "hypercall", Name: hypercallName(in.code),
		Code: fmt.Sprintf("%#x", in.code), Fast: in.fast, Reps: in.repCount, Status: statusName(status)})
}

// TraceVMBus writes a VMBus control message to the trace (a no-op without
// one): dir "in" from the guest, "out" to it, "ic" an integration
// service's negotiation.
func (p *Partition) TraceVMBus(vp int, dir, msg, detail string) {
	if p.trace == nil {
		return
	}
	p.trace.write(TraceRecord{VCPU: vp, Kind: "vmbus-" + dir, Name: msg, Detail: detail})
}

// Tracing says whether the partition has a trace.
func (p *Partition) Tracing() bool { return p.trace != nil }

func (t *tracer) flush() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = t.w.Flush()
	}
	return t.err
}

// FlushTrace writes out buffered trace lines; call it when the VM has stopped.
func (p *Partition) FlushTrace() error {
	if err := p.trace.flush(); err != nil {
		return fmt.Errorf("hyperv trace: %w", err)
	}
	return nil
}
