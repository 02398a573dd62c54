package kvm

import (
	"testing"
	"unsafe"
)

// goABI lists the Go side of every ABI number, keyed like testdata/abi.c's output.
func goABI() map[string]uintptr {
	var (
		run  RunData
		regs Regs
		seg  Segment
		sr   Sregs
		ce   CPUIDEntry
		me   MSREntry
		ev   VCPUEvents
		mr   UserspaceMemoryRegion
		irqf kvmIRQFDArg
		ioe  IOEventFD
		msi  kvmMSI
		ec   kvmEnableCapArg
		fr   kvmMSRFilterRange
		mf   kvmMSRFilter
		cd   kvmClockData
		io   ioExit
		mm   mmioExit
		ms   MSRExit
		de   dataExit
		fe   failEntryExit
		ex   exceptionExit
		hc   HypercallExit
		da   kvmDeviceAttr
		re   kvmIRQRoutingEntry
	)
	u := unsafe.Offsetof(run.Exit)
	return map[string]uintptr{
		"sizeof kvm_run": unsafe.Sizeof(run),
		"offsetof kvm_run.request_interrupt_window":                 unsafe.Offsetof(run.RequestInterruptWindow),
		"offsetof kvm_run.immediate_exit":                           unsafe.Offsetof(run.ImmediateExit),
		"offsetof kvm_run.exit_reason":                              unsafe.Offsetof(run.ExitReason),
		"offsetof kvm_run.ready_for_interrupt_injection":            unsafe.Offsetof(run.ReadyForInterruptInjection),
		"offsetof kvm_run.if_flag":                                  unsafe.Offsetof(run.IfFlag),
		"offsetof kvm_run.flags":                                    unsafe.Offsetof(run.Flags),
		"offsetof kvm_run.cr8":                                      unsafe.Offsetof(run.CR8),
		"offsetof kvm_run.apic_base":                                unsafe.Offsetof(run.APICBase),
		"offsetof kvm_run.io":                                       u,
		"offsetof kvm_run.io.direction":                             u + unsafe.Offsetof(io.Direction),
		"offsetof kvm_run.io.size":                                  u + unsafe.Offsetof(io.Size),
		"offsetof kvm_run.io.port":                                  u + unsafe.Offsetof(io.Port),
		"offsetof kvm_run.io.count":                                 u + unsafe.Offsetof(io.Count),
		"offsetof kvm_run.io.data_offset":                           u + unsafe.Offsetof(io.DataOffset),
		"offsetof kvm_run.mmio.phys_addr":                           u + unsafe.Offsetof(mm.PhysAddr),
		"offsetof kvm_run.mmio.data":                                u + unsafe.Offsetof(mm.Data),
		"offsetof kvm_run.mmio.len":                                 u + unsafe.Offsetof(mm.Len),
		"offsetof kvm_run.mmio.is_write":                            u + unsafe.Offsetof(mm.IsWrite),
		"offsetof kvm_run.msr.error":                                u + unsafe.Offsetof(ms.Error),
		"offsetof kvm_run.msr.reason":                               u + unsafe.Offsetof(ms.Reason),
		"offsetof kvm_run.msr.index":                                u + unsafe.Offsetof(ms.Index),
		"offsetof kvm_run.msr.data":                                 u + unsafe.Offsetof(ms.Data),
		"offsetof kvm_run.internal.suberror":                        u + unsafe.Offsetof(de.Head),
		"offsetof kvm_run.internal.ndata":                           u + unsafe.Offsetof(de.NData),
		"offsetof kvm_run.internal.data":                            u + unsafe.Offsetof(de.Data),
		"offsetof kvm_run.system_event.type":                        u + unsafe.Offsetof(de.Head),
		"offsetof kvm_run.system_event.ndata":                       u + unsafe.Offsetof(de.NData),
		"offsetof kvm_run.system_event.data":                        u + unsafe.Offsetof(de.Data),
		"offsetof kvm_run.fail_entry.hardware_entry_failure_reason": u + unsafe.Offsetof(fe.HardwareEntryFailureReason),
		"offsetof kvm_run.fail_entry.cpu":                           u + unsafe.Offsetof(fe.CPU),
		"offsetof kvm_run.ex.exception":                             u + unsafe.Offsetof(ex.Exception),
		"offsetof kvm_run.ex.error_code":                            u + unsafe.Offsetof(ex.ErrorCode),
		"offsetof kvm_run.hypercall.nr":                             u + unsafe.Offsetof(hc.Nr),
		"offsetof kvm_run.hypercall.args":                           u + unsafe.Offsetof(hc.Args),
		"offsetof kvm_run.hypercall.ret":                            u + unsafe.Offsetof(hc.Ret),
		"offsetof kvm_run.hypercall.longmode":                       u + unsafe.Offsetof(hc.LongMode),
		"offsetof kvm_run.eoi.vector":                               u,
		"offsetof kvm_run.kvm_valid_regs":                           unsafe.Offsetof(run.ValidRegs),
		"offsetof kvm_run.kvm_dirty_regs":                           unsafe.Offsetof(run.DirtyRegs),
		"offsetof kvm_run.s":                                        unsafe.Offsetof(run.SyncRegs),

		"sizeof kvm_regs":                     unsafe.Sizeof(regs),
		"offsetof kvm_regs.rip":               unsafe.Offsetof(regs.RIP),
		"offsetof kvm_regs.rflags":            unsafe.Offsetof(regs.RFLAGS),
		"sizeof kvm_segment":                  unsafe.Sizeof(seg),
		"offsetof kvm_segment.limit":          unsafe.Offsetof(seg.Limit),
		"offsetof kvm_segment.selector":       unsafe.Offsetof(seg.Selector),
		"offsetof kvm_segment.type":           unsafe.Offsetof(seg.Type),
		"offsetof kvm_segment.unusable":       unsafe.Offsetof(seg.Unusable),
		"sizeof kvm_dtable":                   unsafe.Sizeof(DTable{}),
		"sizeof kvm_sregs":                    unsafe.Sizeof(sr),
		"offsetof kvm_sregs.tr":               unsafe.Offsetof(sr.TR),
		"offsetof kvm_sregs.gdt":              unsafe.Offsetof(sr.GDT),
		"offsetof kvm_sregs.idt":              unsafe.Offsetof(sr.IDT),
		"offsetof kvm_sregs.cr0":              unsafe.Offsetof(sr.CR0),
		"offsetof kvm_sregs.efer":             unsafe.Offsetof(sr.EFER),
		"offsetof kvm_sregs.apic_base":        unsafe.Offsetof(sr.APICBase),
		"offsetof kvm_sregs.interrupt_bitmap": unsafe.Offsetof(sr.InterruptBitmap),

		"sizeof kvm_cpuid2":                                    unsafe.Sizeof(kvmCPUID2{}),
		"sizeof kvm_cpuid_entry2":                              unsafe.Sizeof(ce),
		"offsetof kvm_cpuid_entry2.flags":                      unsafe.Offsetof(ce.Flags),
		"offsetof kvm_cpuid_entry2.eax":                        unsafe.Offsetof(ce.EAX),
		"offsetof kvm_cpuid_entry2.edx":                        unsafe.Offsetof(ce.EDX),
		"sizeof kvm_msrs":                                      unsafe.Sizeof(kvmMSRsHeader{}),
		"sizeof kvm_msr_entry":                                 unsafe.Sizeof(me),
		"offsetof kvm_msr_entry.data":                          unsafe.Offsetof(me.Data),
		"sizeof kvm_msr_list":                                  unsafe.Sizeof(kvmMSRList{}),
		"sizeof kvm_lapic_state":                               unsafe.Sizeof(LAPICState{}),
		"sizeof kvm_mp_state":                                  unsafe.Sizeof(MPState(0)),
		"sizeof kvm_vcpu_events":                               unsafe.Sizeof(ev),
		"offsetof kvm_vcpu_events.interrupt":                   unsafe.Offsetof(ev.Interrupt),
		"offsetof kvm_vcpu_events.nmi":                         unsafe.Offsetof(ev.NMI),
		"offsetof kvm_vcpu_events.sipi_vector":                 unsafe.Offsetof(ev.SIPIVector),
		"offsetof kvm_vcpu_events.flags":                       unsafe.Offsetof(ev.Flags),
		"offsetof kvm_vcpu_events.smi":                         unsafe.Offsetof(ev.SMI),
		"offsetof kvm_vcpu_events.triple_fault":                unsafe.Offsetof(ev.TripleFault),
		"offsetof kvm_vcpu_events.exception_has_payload":       unsafe.Offsetof(ev.ExceptionHasPayload),
		"offsetof kvm_vcpu_events.exception_payload":           unsafe.Offsetof(ev.ExceptionPayload),
		"sizeof kvm_userspace_memory_region":                   unsafe.Sizeof(mr),
		"offsetof kvm_userspace_memory_region.guest_phys_addr": unsafe.Offsetof(mr.GuestPhysAddr),
		"offsetof kvm_userspace_memory_region.memory_size":     unsafe.Offsetof(mr.MemorySize),
		"offsetof kvm_userspace_memory_region.userspace_addr":  unsafe.Offsetof(mr.UserspaceAddr),
		"sizeof kvm_irqfd":                                     unsafe.Sizeof(irqf),
		"offsetof kvm_irqfd.flags":                             unsafe.Offsetof(irqf.Flags),
		"offsetof kvm_irqfd.resamplefd":                        unsafe.Offsetof(irqf.ResampleFD),
		"sizeof kvm_ioeventfd":                                 unsafe.Sizeof(ioe),
		"offsetof kvm_ioeventfd.addr":                          unsafe.Offsetof(ioe.Addr),
		"offsetof kvm_ioeventfd.len":                           unsafe.Offsetof(ioe.Len),
		"offsetof kvm_ioeventfd.fd":                            unsafe.Offsetof(ioe.FD),
		"offsetof kvm_ioeventfd.flags":                         unsafe.Offsetof(ioe.Flags),
		"sizeof kvm_msi":                                       unsafe.Sizeof(msi),
		"offsetof kvm_msi.data":                                unsafe.Offsetof(msi.Data),
		"offsetof kvm_msi.devid":                               unsafe.Offsetof(msi.DevID),
		"sizeof kvm_enable_cap":                                unsafe.Sizeof(ec),
		"offsetof kvm_enable_cap.args":                         unsafe.Offsetof(ec.Args),
		"sizeof kvm_msr_filter_range":                          unsafe.Sizeof(fr),
		"offsetof kvm_msr_filter_range.nmsrs":                  unsafe.Offsetof(fr.NMSRs),
		"offsetof kvm_msr_filter_range.base":                   unsafe.Offsetof(fr.Base),
		"offsetof kvm_msr_filter_range.bitmap":                 unsafe.Offsetof(fr.Bitmap),
		"sizeof kvm_msr_filter":                                unsafe.Sizeof(mf),
		"offsetof kvm_msr_filter.ranges":                       unsafe.Offsetof(mf.Ranges),
		"sizeof kvm_pit_config":                                unsafe.Sizeof(kvmPITConfig{}),
		"sizeof kvm_irq_level":                                 unsafe.Sizeof(kvmIRQLevel{}),
		"sizeof kvm_device_attr":                               unsafe.Sizeof(da),
		"offsetof kvm_device_attr.group":                       unsafe.Offsetof(da.Group),
		"offsetof kvm_device_attr.attr":                        unsafe.Offsetof(da.Attr),
		"offsetof kvm_device_attr.addr":                        unsafe.Offsetof(da.Addr),
		"sizeof kvm_irq_routing":                               unsafe.Sizeof(kvmIRQRoutingHeader{}),
		"sizeof kvm_irq_routing_entry":                         unsafe.Sizeof(re),
		"offsetof kvm_irq_routing_entry.type":                  unsafe.Offsetof(re.Type),
		"offsetof kvm_irq_routing_entry.flags":                 unsafe.Offsetof(re.Flags),
		"offsetof kvm_irq_routing_entry.u":                     unsafe.Offsetof(re.U),
		"offsetof kvm_irq_routing_entry.u.irqchip.pin":         unsafe.Offsetof(re.U) + 4,
		"offsetof kvm_irq_routing_entry.u.msi.address_hi":      unsafe.Offsetof(re.U) + 4,
		"offsetof kvm_irq_routing_entry.u.msi.data":            unsafe.Offsetof(re.U) + 8,
		"offsetof kvm_irq_routing_entry.u.msi.devid":           unsafe.Offsetof(re.U) + 12,
		"sizeof kvm_clock_data":                                unsafe.Sizeof(cd),
		"offsetof kvm_clock_data.realtime":                     unsafe.Offsetof(cd.Realtime),
		"offsetof kvm_clock_data.host_tsc":                     unsafe.Offsetof(cd.HostTSC),

		"ioctl KVM_GET_API_VERSION":        kvmGetAPIVersion,
		"ioctl KVM_CREATE_VM":              kvmCreateVM,
		"ioctl KVM_GET_MSR_INDEX_LIST":     kvmGetMSRIndexList,
		"ioctl KVM_CHECK_EXTENSION":        kvmCheckExtension,
		"ioctl KVM_GET_VCPU_MMAP_SIZE":     kvmGetVCPUMmapSize,
		"ioctl KVM_GET_SUPPORTED_CPUID":    kvmGetSupportedCPUID,
		"ioctl KVM_CREATE_VCPU":            kvmCreateVCPU,
		"ioctl KVM_SET_USER_MEMORY_REGION": kvmSetUserMemoryRegion,
		"ioctl KVM_SET_TSS_ADDR":           kvmSetTSSAddr,
		"ioctl KVM_SET_IDENTITY_MAP_ADDR":  kvmSetIdentityMapAddr,
		"ioctl KVM_CREATE_IRQCHIP":         kvmCreateIRQChip,
		"ioctl KVM_IRQ_LINE":               kvmIRQLine,
		"ioctl KVM_IRQFD":                  kvmIRQFD,
		"ioctl KVM_CREATE_PIT2":            kvmCreatePIT2,
		"ioctl KVM_IOEVENTFD":              kvmIOEventFD,
		"ioctl KVM_SET_CLOCK":              kvmSetClock,
		"ioctl KVM_GET_CLOCK":              kvmGetClock,
		"ioctl KVM_SIGNAL_MSI":             kvmSignalMSI,
		"ioctl KVM_X86_SET_MSR_FILTER":     kvmX86SetMSRFilter,
		"ioctl KVM_ENABLE_CAP":             kvmEnableCap,
		"ioctl KVM_SET_GSI_ROUTING":        kvmSetGSIRouting,
		"ioctl KVM_SET_DEVICE_ATTR":        kvmSetDeviceAttr,
		"ioctl KVM_GET_DEVICE_ATTR":        kvmGetDeviceAttr,
		"ioctl KVM_HAS_DEVICE_ATTR":        kvmHasDeviceAttr,
		"ioctl KVM_RUN":                    kvmRun,
		"ioctl KVM_GET_REGS":               kvmGetRegs,
		"ioctl KVM_SET_REGS":               kvmSetRegs,
		"ioctl KVM_GET_SREGS":              kvmGetSregs,
		"ioctl KVM_SET_SREGS":              kvmSetSregs,
		"ioctl KVM_GET_MSRS":               kvmGetMSRs,
		"ioctl KVM_SET_MSRS":               kvmSetMSRs,
		"ioctl KVM_GET_LAPIC":              kvmGetLAPIC,
		"ioctl KVM_SET_LAPIC":              kvmSetLAPIC,
		"ioctl KVM_SET_CPUID2":             kvmSetCPUID2,
		"ioctl KVM_GET_CPUID2":             kvmGetCPUID2,
		"ioctl KVM_GET_MP_STATE":           kvmGetMPState,
		"ioctl KVM_SET_MP_STATE":           kvmSetMPState,
		"ioctl KVM_NMI":                    kvmNMI,
		"ioctl KVM_GET_VCPU_EVENTS":        kvmGetVCPUEvents,
		"ioctl KVM_SET_VCPU_EVENTS":        kvmSetVCPUEvents,
		"ioctl KVM_SET_TSC_KHZ":            kvmSetTSCKHz,
		"ioctl KVM_GET_TSC_KHZ":            kvmGetTSCKHz,
	}
}

// kernelABI is what testdata/abi.c printed when compiled against
// <linux/kvm.h> (linux-libc-dev 6.1, x86_64), pinned so the check runs
// without a C compiler. Sizes and offsets are in bytes.
func kernelABI() map[string]uintptr {
	return map[string]uintptr{
		"sizeof kvm_device_attr":                                    24,
		"offsetof kvm_device_attr.group":                            4,
		"offsetof kvm_device_attr.attr":                             8,
		"offsetof kvm_device_attr.addr":                             16,
		"sizeof kvm_irq_routing":                                    8,
		"sizeof kvm_irq_routing_entry":                              48,
		"offsetof kvm_irq_routing_entry.type":                       4,
		"offsetof kvm_irq_routing_entry.flags":                      8,
		"offsetof kvm_irq_routing_entry.u":                          16,
		"offsetof kvm_irq_routing_entry.u.irqchip.pin":              20,
		"offsetof kvm_irq_routing_entry.u.msi.address_hi":           20,
		"offsetof kvm_irq_routing_entry.u.msi.data":                 24,
		"offsetof kvm_irq_routing_entry.u.msi.devid":                28,
		"ioctl KVM_SET_GSI_ROUTING":                                 0x4008ae6a,
		"ioctl KVM_SET_DEVICE_ATTR":                                 0x4018aee1,
		"ioctl KVM_GET_DEVICE_ATTR":                                 0x4018aee2,
		"ioctl KVM_HAS_DEVICE_ATTR":                                 0x4018aee3,
		"sizeof kvm_run":                                            2352,
		"offsetof kvm_run.request_interrupt_window":                 0,
		"offsetof kvm_run.immediate_exit":                           1,
		"offsetof kvm_run.exit_reason":                              8,
		"offsetof kvm_run.ready_for_interrupt_injection":            12,
		"offsetof kvm_run.if_flag":                                  13,
		"offsetof kvm_run.flags":                                    14,
		"offsetof kvm_run.cr8":                                      16,
		"offsetof kvm_run.apic_base":                                24,
		"offsetof kvm_run.io":                                       32,
		"offsetof kvm_run.io.direction":                             32,
		"offsetof kvm_run.io.size":                                  33,
		"offsetof kvm_run.io.port":                                  34,
		"offsetof kvm_run.io.count":                                 36,
		"offsetof kvm_run.io.data_offset":                           40,
		"offsetof kvm_run.mmio.phys_addr":                           32,
		"offsetof kvm_run.mmio.data":                                40,
		"offsetof kvm_run.mmio.len":                                 48,
		"offsetof kvm_run.mmio.is_write":                            52,
		"offsetof kvm_run.msr.error":                                32,
		"offsetof kvm_run.msr.reason":                               40,
		"offsetof kvm_run.msr.index":                                44,
		"offsetof kvm_run.msr.data":                                 48,
		"offsetof kvm_run.internal.suberror":                        32,
		"offsetof kvm_run.internal.ndata":                           36,
		"offsetof kvm_run.internal.data":                            40,
		"offsetof kvm_run.system_event.type":                        32,
		"offsetof kvm_run.system_event.ndata":                       36,
		"offsetof kvm_run.system_event.data":                        40,
		"offsetof kvm_run.fail_entry.hardware_entry_failure_reason": 32,
		"offsetof kvm_run.fail_entry.cpu":                           40,
		"offsetof kvm_run.ex.exception":                             32,
		"offsetof kvm_run.ex.error_code":                            36,
		"offsetof kvm_run.hypercall.nr":                             32,
		"offsetof kvm_run.hypercall.args":                           40,
		"offsetof kvm_run.hypercall.ret":                            88,
		"offsetof kvm_run.hypercall.longmode":                       96,
		"offsetof kvm_run.eoi.vector":                               32,
		"offsetof kvm_run.kvm_valid_regs":                           288,
		"offsetof kvm_run.kvm_dirty_regs":                           296,
		"offsetof kvm_run.s":                                        304,
		"sizeof kvm_regs":                                           144,
		"offsetof kvm_regs.rip":                                     128,
		"offsetof kvm_regs.rflags":                                  136,
		"sizeof kvm_segment":                                        24,
		"offsetof kvm_segment.limit":                                8,
		"offsetof kvm_segment.selector":                             12,
		"offsetof kvm_segment.type":                                 14,
		"offsetof kvm_segment.unusable":                             22,
		"sizeof kvm_dtable":                                         16,
		"sizeof kvm_sregs":                                          312,
		"offsetof kvm_sregs.tr":                                     144,
		"offsetof kvm_sregs.gdt":                                    192,
		"offsetof kvm_sregs.idt":                                    208,
		"offsetof kvm_sregs.cr0":                                    224,
		"offsetof kvm_sregs.efer":                                   264,
		"offsetof kvm_sregs.apic_base":                              272,
		"offsetof kvm_sregs.interrupt_bitmap":                       280,
		"sizeof kvm_cpuid2":                                         8,
		"sizeof kvm_cpuid_entry2":                                   40,
		"offsetof kvm_cpuid_entry2.flags":                           8,
		"offsetof kvm_cpuid_entry2.eax":                             12,
		"offsetof kvm_cpuid_entry2.edx":                             24,
		"sizeof kvm_msrs":                                           8,
		"sizeof kvm_msr_entry":                                      16,
		"offsetof kvm_msr_entry.data":                               8,
		"sizeof kvm_msr_list":                                       4,
		"sizeof kvm_lapic_state":                                    1024,
		"sizeof kvm_mp_state":                                       4,
		"sizeof kvm_vcpu_events":                                    64,
		"offsetof kvm_vcpu_events.interrupt":                        8,
		"offsetof kvm_vcpu_events.nmi":                              12,
		"offsetof kvm_vcpu_events.sipi_vector":                      16,
		"offsetof kvm_vcpu_events.flags":                            20,
		"offsetof kvm_vcpu_events.smi":                              24,
		"offsetof kvm_vcpu_events.triple_fault":                     28,
		"offsetof kvm_vcpu_events.exception_has_payload":            55,
		"offsetof kvm_vcpu_events.exception_payload":                56,
		"sizeof kvm_userspace_memory_region":                        32,
		"offsetof kvm_userspace_memory_region.guest_phys_addr":      8,
		"offsetof kvm_userspace_memory_region.memory_size":          16,
		"offsetof kvm_userspace_memory_region.userspace_addr":       24,
		"sizeof kvm_irqfd":                                          32,
		"offsetof kvm_irqfd.flags":                                  8,
		"offsetof kvm_irqfd.resamplefd":                             12,
		"sizeof kvm_ioeventfd":                                      64,
		"offsetof kvm_ioeventfd.addr":                               8,
		"offsetof kvm_ioeventfd.len":                                16,
		"offsetof kvm_ioeventfd.fd":                                 20,
		"offsetof kvm_ioeventfd.flags":                              24,
		"sizeof kvm_msi":                                            32,
		"offsetof kvm_msi.data":                                     8,
		"offsetof kvm_msi.devid":                                    16,
		"sizeof kvm_enable_cap":                                     104,
		"offsetof kvm_enable_cap.args":                              8,
		"sizeof kvm_msr_filter_range":                               24,
		"offsetof kvm_msr_filter_range.nmsrs":                       4,
		"offsetof kvm_msr_filter_range.base":                        8,
		"offsetof kvm_msr_filter_range.bitmap":                      16,
		"sizeof kvm_msr_filter":                                     392,
		"offsetof kvm_msr_filter.ranges":                            8,
		"sizeof kvm_pit_config":                                     64,
		"sizeof kvm_irq_level":                                      8,
		"sizeof kvm_clock_data":                                     48,
		"offsetof kvm_clock_data.realtime":                          16,
		"offsetof kvm_clock_data.host_tsc":                          24,
		"ioctl KVM_GET_API_VERSION":                                 0xae00,
		"ioctl KVM_CREATE_VM":                                       0xae01,
		"ioctl KVM_GET_MSR_INDEX_LIST":                              0xc004ae02,
		"ioctl KVM_CHECK_EXTENSION":                                 0xae03,
		"ioctl KVM_GET_VCPU_MMAP_SIZE":                              0xae04,
		"ioctl KVM_GET_SUPPORTED_CPUID":                             0xc008ae05,
		"ioctl KVM_CREATE_VCPU":                                     0xae41,
		"ioctl KVM_SET_USER_MEMORY_REGION":                          0x4020ae46,
		"ioctl KVM_SET_TSS_ADDR":                                    0xae47,
		"ioctl KVM_SET_IDENTITY_MAP_ADDR":                           0x4008ae48,
		"ioctl KVM_CREATE_IRQCHIP":                                  0xae60,
		"ioctl KVM_IRQ_LINE":                                        0x4008ae61,
		"ioctl KVM_IRQFD":                                           0x4020ae76,
		"ioctl KVM_CREATE_PIT2":                                     0x4040ae77,
		"ioctl KVM_IOEVENTFD":                                       0x4040ae79,
		"ioctl KVM_SET_CLOCK":                                       0x4030ae7b,
		"ioctl KVM_GET_CLOCK":                                       0x8030ae7c,
		"ioctl KVM_SIGNAL_MSI":                                      0x4020aea5,
		"ioctl KVM_X86_SET_MSR_FILTER":                              0x4188aec6,
		"ioctl KVM_ENABLE_CAP":                                      0x4068aea3,
		"ioctl KVM_RUN":                                             0xae80,
		"ioctl KVM_GET_REGS":                                        0x8090ae81,
		"ioctl KVM_SET_REGS":                                        0x4090ae82,
		"ioctl KVM_GET_SREGS":                                       0x8138ae83,
		"ioctl KVM_SET_SREGS":                                       0x4138ae84,
		"ioctl KVM_GET_MSRS":                                        0xc008ae88,
		"ioctl KVM_SET_MSRS":                                        0x4008ae89,
		"ioctl KVM_GET_LAPIC":                                       0x8400ae8e,
		"ioctl KVM_SET_LAPIC":                                       0x4400ae8f,
		"ioctl KVM_SET_CPUID2":                                      0x4008ae90,
		"ioctl KVM_GET_CPUID2":                                      0xc008ae91,
		"ioctl KVM_GET_MP_STATE":                                    0x8004ae98,
		"ioctl KVM_SET_MP_STATE":                                    0x4004ae99,
		"ioctl KVM_NMI":                                             0xae9a,
		"ioctl KVM_GET_VCPU_EVENTS":                                 0x8040ae9f,
		"ioctl KVM_SET_VCPU_EVENTS":                                 0x4040aea0,
		"ioctl KVM_SET_TSC_KHZ":                                     0xaea2,
		"ioctl KVM_GET_TSC_KHZ":                                     0xaea3,
	}
}

func TestABILayoutMatchesKernel(t *testing.T) {
	got, pinned := goABI(), kernelABI()
	for name, want := range pinned {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: no Go counterpart", name)
			continue
		}
		if g != want {
			t.Errorf("%s = %d (%#x), kernel has %d (%#x)", name, g, g, want, want)
		}
	}
	for name := range got {
		if _, ok := pinned[name]; !ok {
			t.Errorf("%s: Go value not pinned to a kernel value", name)
		}
	}
}

// ioc is the kernel's _IOC(dir, KVMIO, nr, size).
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | size<<iocSizeShift | kvmIO<<iocTypeShift | nr<<iocNRShift
}

func TestIoctlEncoding(t *testing.T) {
	// Spot checks from the kernel documentation and other VMMs, independent of abi.c.
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, 0xAE00},
		{"KVM_CREATE_VM", kvmCreateVM, 0xAE01},
		{"KVM_RUN", kvmRun, 0xAE80},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, 0x4020AE46},
		{"KVM_GET_REGS", kvmGetRegs, 0x8090AE81},
		{"KVM_SET_SREGS", kvmSetSregs, 0x4138AE84},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, 0xC008AE05},
		{"KVM_X86_SET_MSR_FILTER", kvmX86SetMSRFilter, 0x4188AEC6},
		// The encoder itself, for an _IOWR, an _IOR and an _IO.
		{"_IOWR(0x88, 8)", ioc(iocRead|iocWrite, 0x88, 8), kvmGetMSRs},
		{"_IOR(0x9f, 64)", ioc(iocRead, 0x9f, 64), kvmGetVCPUEvents},
		{"_IO(0x41)", ioc(iocNone, 0x41, 0), kvmCreateVCPU},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
