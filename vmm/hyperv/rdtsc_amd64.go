package hyperv

// rdtsc reads the host's time-stamp counter (RDTSC). The reference clock
// must come from the same counter the guest reads, not from the OS clock,
// or the TSC page and TIME_REF_COUNT would drift apart.
func rdtsc() uint64
