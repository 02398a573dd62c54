// Package agentsuite holds only tests: `vmm test` end to end with the real
// agent guest (Debian's kernel, the agent initramfs and the GRUB disk that
// `make images` leaves under build/images) and bin/vmm (`make build`), in the
// nested test host through bin/kvmexec. TestKVMAgentSuite runs the shipped
// suites/agent.toml with --jobs 2 and again as two shards merged;
// TestKVMHyperVAblation runs the shipped suites/hyperv-ablation.toml over a
// few switches and opens its HTML page in headless Chromium. Both run copies
// with Linux's early PCI scans off (testhost.NoEarlyPCI), which cost seconds
// per boot in the nested test host.
package agentsuite
