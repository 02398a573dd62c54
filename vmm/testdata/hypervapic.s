	.code64
	.globl _start
# Hyper-V APIC access MSRs (hv-vapic) against the in-kernel LAPIC: the VP
# assist page, TPR through the MSR (checked through the APIC's MMIO page
# and by holding off an interrupt), a self-IPI through the ICR MSR and its
# EOI through the EOI MSR (checked in the ISR and by a second IPI of the
# same vector getting in). Without the APIC access privilege (0x40000003
# EAX bit 4) it only checks that the MSRs #GP. Results at 0x200000.
_start:
	mov $0x200000, %edi
	mov $0x210000, %ebx
	mov $13, %ecx
	mov $gp_handler, %eax
	call set_gate
	mov $0x60, %ecx
	mov $ipi_handler, %eax
	call set_gate
	lidt idtr
	# LAPIC on: SVR = enable | spurious vector 0xff
	mov $0xfee000f0, %eax
	movl $0x1ff, (%rax)
	mov $0x40000003, %eax
	cpuid
	mov %eax, 0(%rdi)
	mov $0x40000004, %eax
	cpuid
	mov %eax, 4(%rdi)
	testl $0x10, 0(%rdi)
	jnz vapic
	# no vapic: each access #GPs (counted at 60)
	mov $0x40000070, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	mov $0x40000071, %ecx
	wrmsr
	mov $0x40000072, %ecx
	rdmsr
	jmp done
vapic:
	# guest OS ID
	mov $0x40000000, %ecx
	mov $1, %eax
	mov $0x81000000, %edx
	wrmsr
	# VP assist page at 0x303000, filled with 0x5a first
	mov $0x303000, %esi
	mov $512, %ecx
	mov $0x5a5a5a5a5a5a5a5a, %rax
1:	mov %rax, (%rsi)
	add $8, %rsi
	loop 1b
	mov $0x40000073, %ecx
	mov $0x303001, %eax
	xor %edx, %edx
	wrmsr
	rdmsr
	mov %eax, 8(%rdi)
	mov %edx, 12(%rdi)
	mov 0x303000, %rax
	mov %rax, 16(%rdi)
	mov 0x303ff8, %rax
	mov %rax, 24(%rdi)
	# TPR through the MSR, seen in the APIC page; and the other way round
	mov $0x40000072, %ecx
	mov $0x20, %eax
	xor %edx, %edx
	wrmsr
	mov $0xfee00080, %esi
	mov (%rsi), %eax
	mov %eax, 32(%rdi)
	movl $0x30, (%rsi)
	mov $0x40000072, %ecx
	rdmsr
	mov %eax, 36(%rdi)
	# TPR 0x70 holds off vector 0x60: a self-IPI through the ICR MSR waits
	mov $0x40000072, %ecx
	mov $0x70, %eax
	xor %edx, %edx
	wrmsr
	sti
	mov $0x40000071, %ecx
	mov $0x44060, %eax      # shorthand self | assert | fixed | vector 0x60
	xor %edx, %edx
	wrmsr
	mov $1000, %ecx
2:	pause
	loop 2b
	mov 56(%rdi), %eax
	mov %eax, 40(%rdi)
	# TPR 0 lets it in at once
	mov $0x40000072, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	nop
	mov 56(%rdi), %eax
	mov %eax, 44(%rdi)
	# the handler's EOI through the MSR lets the same vector in again
	mov $0x40000071, %ecx
	mov $0x44060, %eax
	xor %edx, %edx
	wrmsr
	nop
	cli
	rdmsr
	mov %eax, 64(%rdi)
	mov %edx, 68(%rdi)
	# assist page off
	mov $0x40000073, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	rdmsr
	mov %eax, 72(%rdi)
	mov %edx, 76(%rdi)
done:
	mov $0x10, %al
	out %al, $0xf4
	hlt

# set_gate: interrupt gate for vector ecx -> handler eax in the IDT at rbx
set_gate:
	shl $4, %ecx
	add %rbx, %rcx
	mov %ax, (%rcx)
	mov %cs, %dx
	mov %dx, 2(%rcx)
	movb $0x8e, 5(%rcx)
	shr $16, %eax
	mov %ax, 6(%rcx)
	ret

# #GP: count and skip the 2-byte rdmsr/wrmsr
gp_handler:
	incl 0x20003c
	addq $2, 8(%rsp)
	add $8, %rsp
	iretq

ipi_handler:
	push %rax
	push %rcx
	push %rdx
	incl 0x200038
	cmpl $1, 0x200038
	jne 1f
	mov $0xfee00130, %eax     # ISR bits 96-127: vector 0x60 is bit 0
	mov (%rax), %eax
	mov %eax, 0x200030
1:	mov $0x40000070, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	cmpl $1, 0x200038
	jne 2f
	mov $0xfee00130, %eax
	mov (%rax), %eax
	mov %eax, 0x200034
2:	pop %rdx
	pop %rcx
	pop %rax
	iretq

	.align 8
idtr:
	.word 256*16-1
	.quad 0x210000
