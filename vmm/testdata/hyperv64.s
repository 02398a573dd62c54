	.code64
	.globl _start
_start:
	# results at 0x200000
	mov $0x200000, %edi
	# IDT with a #GP handler that counts and skips the 2-byte rdmsr/wrmsr
	mov $0x210000, %ebx
	mov $gp_handler, %eax
	mov %ax, 13*16(%rbx)
	mov %cs, %ax
	mov %ax, 13*16+2(%rbx)
	movb $0x8e, 13*16+5(%rbx)
	mov $gp_handler, %eax
	shr $16, %eax
	mov %ax, 13*16+6(%rbx)
	lidt idtr
	# CPUID leaves
	mov $0x40000000, %eax
	cpuid
	mov %eax, 0(%rdi)
	mov %ebx, 4(%rdi)
	mov %ecx, 8(%rdi)
	mov %edx, 12(%rdi)
	mov $0x40000003, %eax
	cpuid
	mov %eax, 16(%rdi)
	mov %edx, 20(%rdi)
	mov $0x40000004, %eax
	cpuid
	mov %eax, 24(%rdi)
	mov %ebx, 28(%rdi)
	# VP_INDEX, TSC frequency
	mov $0x40000002, %ecx
	rdmsr
	mov %eax, 32(%rdi)
	mov $0x40000022, %ecx
	rdmsr
	mov %eax, 36(%rdi)
	mov %edx, 40(%rdi)
	# guest OS ID, then the hypercall page at 0x300000
	mov $0x40000000, %ecx
	mov $0x1, %eax
	mov $0x81000000, %edx
	wrmsr
	mov $0x40000001, %ecx
	mov $0x300001, %eax
	xor %edx, %edx
	wrmsr
	# fast HvNotifyLongSpinWait
	mov $0x10008, %ecx
	mov $1, %edx
	xor %r8d, %r8d
	mov $0x300000, %eax
	call *%rax
	mov %rax, 48(%rdi)
	# unknown code
	mov $0x99, %ecx
	mov $0x300000, %eax
	call *%rax
	mov %rax, 56(%rdi)
	# fast HvSendSyntheticClusterIpi with an empty mask
	mov $0x1000b, %ecx
	mov $0x40, %edx
	xor %r8d, %r8d
	mov $0x300000, %eax
	call *%rax
	mov %rax, 64(%rdi)
	# slow HvFlushVirtualAddressSpace, all processors, input at 0x220000
	movq $0, 0x220000
	movq $1, 0x220008
	movq $0, 0x220010
	mov $0x2, %ecx
	mov $0x220000, %edx
	xor %r8d, %r8d
	mov $0x300000, %eax
	call *%rax
	mov %rax, 72(%rdi)
	# #GP: unknown synthetic MSR, VP_INDEX write, SCONTROL (no synic), TIME_REF_COUNT write
	mov $0x40000050, %ecx
	rdmsr
	mov $0x40000002, %ecx
	wrmsr
	mov $0x40000080, %ecx
	rdmsr
	mov $0x40000020, %ecx
	wrmsr
	# reference TSC page at 0x301000
	mov $0x40000021, %ecx
	mov $0x301001, %eax
	xor %edx, %edx
	wrmsr
	mov $0x301000, %esi
	mov $500, %r12d
	xor %r13, %r13         # previous value
	xor %r14, %r14         # violations
loop:
	call page_time
	mov %rax, %r15          # t1
	mov $0x40000020, %ecx
	rdmsr
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %rbp          # msr
	call page_time          # t2
	cmp %r15, %rbp
	jae 1f
	inc %r14
1:	cmp %rbp, %rax
	jae 2f
	inc %r14
2:	cmp %r13, %r15
	jae 3f
	inc %r14
3:	mov %rax, %r13
	dec %r12d
	jnz loop
	mov %r14, 80(%rdi)
	mov %r15, 88(%rdi)
	mov %rbp, 96(%rdi)
	mov %r13, 104(%rdi)
	mov 0x301000, %eax
	mov %eax, 112(%rdi)
	mov $0x10, %al
	out %al, $0xf4
	hlt

page_time:
	mov (%rsi), %r9d
	mov 8(%rsi), %r10
	mov 16(%rsi), %r11
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mul %r10
	mov %rdx, %rax
	add %r11, %rax
	cmp (%rsi), %r9d
	jne page_time
	ret

gp_handler:
	incl 0x200078
	add $8, %rsp
	addq $2, (%rsp)
	iretq

	.align 8
idtr:
	.word 256*16-1
	.quad 0x210000
