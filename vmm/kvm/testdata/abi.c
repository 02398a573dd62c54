// abi.c prints the kernel's sizes, offsets and ioctl numbers for the structs
// package kvm mirrors, one "name value" per line. abi_c_test.go compiles it
// with the host's <linux/kvm.h> and compares every line with the Go values.
#include <stddef.h>
#include <stdio.h>
#include <linux/kvm.h>

#define SZ(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define OFF(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define IOC(n) printf("ioctl %s %#lx\n", #n, (unsigned long)(n))

int main(void) {
	SZ(kvm_run);
	OFF(kvm_run, request_interrupt_window);
	OFF(kvm_run, immediate_exit);
	OFF(kvm_run, exit_reason);
	OFF(kvm_run, ready_for_interrupt_injection);
	OFF(kvm_run, if_flag);
	OFF(kvm_run, flags);
	OFF(kvm_run, cr8);
	OFF(kvm_run, apic_base);
	OFF(kvm_run, io);
	OFF(kvm_run, io.direction);
	OFF(kvm_run, io.size);
	OFF(kvm_run, io.port);
	OFF(kvm_run, io.count);
	OFF(kvm_run, io.data_offset);
	OFF(kvm_run, mmio.phys_addr);
	OFF(kvm_run, mmio.data);
	OFF(kvm_run, mmio.len);
	OFF(kvm_run, mmio.is_write);
	OFF(kvm_run, msr.error);
	OFF(kvm_run, msr.reason);
	OFF(kvm_run, msr.index);
	OFF(kvm_run, msr.data);
	OFF(kvm_run, internal.suberror);
	OFF(kvm_run, internal.ndata);
	OFF(kvm_run, internal.data);
	OFF(kvm_run, system_event.type);
	OFF(kvm_run, system_event.ndata);
	OFF(kvm_run, system_event.data);
	OFF(kvm_run, fail_entry.hardware_entry_failure_reason);
	OFF(kvm_run, fail_entry.cpu);
	OFF(kvm_run, ex.exception);
	OFF(kvm_run, ex.error_code);
	OFF(kvm_run, hypercall.nr);
	OFF(kvm_run, hypercall.args);
	OFF(kvm_run, hypercall.ret);
	OFF(kvm_run, hypercall.longmode);
	OFF(kvm_run, eoi.vector);
	OFF(kvm_run, kvm_valid_regs);
	OFF(kvm_run, kvm_dirty_regs);
	OFF(kvm_run, s);

	SZ(kvm_regs);
	OFF(kvm_regs, rip);
	OFF(kvm_regs, rflags);
	SZ(kvm_segment);
	OFF(kvm_segment, limit);
	OFF(kvm_segment, selector);
	OFF(kvm_segment, type);
	OFF(kvm_segment, unusable);
	SZ(kvm_dtable);
	SZ(kvm_sregs);
	OFF(kvm_sregs, tr);
	OFF(kvm_sregs, gdt);
	OFF(kvm_sregs, idt);
	OFF(kvm_sregs, cr0);
	OFF(kvm_sregs, efer);
	OFF(kvm_sregs, apic_base);
	OFF(kvm_sregs, interrupt_bitmap);

	SZ(kvm_cpuid2);
	SZ(kvm_cpuid_entry2);
	OFF(kvm_cpuid_entry2, flags);
	OFF(kvm_cpuid_entry2, eax);
	OFF(kvm_cpuid_entry2, edx);
	SZ(kvm_msrs);
	SZ(kvm_msr_entry);
	OFF(kvm_msr_entry, data);
	SZ(kvm_msr_list);
	SZ(kvm_lapic_state);
	SZ(kvm_mp_state);
	SZ(kvm_vcpu_events);
	OFF(kvm_vcpu_events, interrupt);
	OFF(kvm_vcpu_events, nmi);
	OFF(kvm_vcpu_events, sipi_vector);
	OFF(kvm_vcpu_events, flags);
	OFF(kvm_vcpu_events, smi);
	OFF(kvm_vcpu_events, triple_fault);
	OFF(kvm_vcpu_events, exception_has_payload);
	OFF(kvm_vcpu_events, exception_payload);
	SZ(kvm_userspace_memory_region);
	OFF(kvm_userspace_memory_region, guest_phys_addr);
	OFF(kvm_userspace_memory_region, memory_size);
	OFF(kvm_userspace_memory_region, userspace_addr);
	SZ(kvm_irqfd);
	OFF(kvm_irqfd, flags);
	OFF(kvm_irqfd, resamplefd);
	SZ(kvm_ioeventfd);
	OFF(kvm_ioeventfd, addr);
	OFF(kvm_ioeventfd, len);
	OFF(kvm_ioeventfd, fd);
	OFF(kvm_ioeventfd, flags);
	SZ(kvm_msi);
	OFF(kvm_msi, data);
	OFF(kvm_msi, devid);
	SZ(kvm_enable_cap);
	OFF(kvm_enable_cap, args);
	SZ(kvm_msr_filter_range);
	OFF(kvm_msr_filter_range, nmsrs);
	OFF(kvm_msr_filter_range, base);
	OFF(kvm_msr_filter_range, bitmap);
	SZ(kvm_msr_filter);
	OFF(kvm_msr_filter, ranges);
	SZ(kvm_pit_config);
	SZ(kvm_irq_level);
	SZ(kvm_clock_data);
	OFF(kvm_clock_data, realtime);
	OFF(kvm_clock_data, host_tsc);

	IOC(KVM_GET_API_VERSION);
	IOC(KVM_CREATE_VM);
	IOC(KVM_GET_MSR_INDEX_LIST);
	IOC(KVM_CHECK_EXTENSION);
	IOC(KVM_GET_VCPU_MMAP_SIZE);
	IOC(KVM_GET_SUPPORTED_CPUID);
	IOC(KVM_CREATE_VCPU);
	IOC(KVM_SET_USER_MEMORY_REGION);
	IOC(KVM_SET_TSS_ADDR);
	IOC(KVM_SET_IDENTITY_MAP_ADDR);
	IOC(KVM_CREATE_IRQCHIP);
	IOC(KVM_IRQ_LINE);
	IOC(KVM_IRQFD);
	IOC(KVM_CREATE_PIT2);
	IOC(KVM_IOEVENTFD);
	IOC(KVM_SET_CLOCK);
	IOC(KVM_GET_CLOCK);
	IOC(KVM_SIGNAL_MSI);
	IOC(KVM_X86_SET_MSR_FILTER);
	IOC(KVM_ENABLE_CAP);
	IOC(KVM_RUN);
	IOC(KVM_GET_REGS);
	IOC(KVM_SET_REGS);
	IOC(KVM_GET_SREGS);
	IOC(KVM_SET_SREGS);
	IOC(KVM_GET_MSRS);
	IOC(KVM_SET_MSRS);
	IOC(KVM_GET_LAPIC);
	IOC(KVM_SET_LAPIC);
	IOC(KVM_SET_CPUID2);
	IOC(KVM_GET_CPUID2);
	IOC(KVM_GET_MP_STATE);
	IOC(KVM_SET_MP_STATE);
	IOC(KVM_NMI);
	IOC(KVM_GET_VCPU_EVENTS);
	IOC(KVM_SET_VCPU_EVENTS);
	IOC(KVM_SET_TSC_KHZ);
	IOC(KVM_GET_TSC_KHZ);
	return 0;
}
